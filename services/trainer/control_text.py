"""Held-out control text: ordinary English prose unrelated to any memory.

Written for memgrid (not copied from anywhere). The trainer measures the base
model's perplexity on it before and after distillation; a rise beyond
``trainer.max_control_ppl_increase`` means the adapter damaged general language
ability, and the adapter is not published. It is never trained on.
"""

CONTROL_TEXT = """\
The kitchen was quiet in the early morning, apart from the slow ticking of the clock \
above the door. Someone had left a bowl of apples on the table, and the light from the \
window made them look brighter than they were. A kettle waited on the stove, half full, \
and a folded newspaper lay beside it with yesterday's weather on the front page.

Most people who learn to ride a bicycle remember the moment when they stopped \
thinking about balance. Before that point every small wobble feels like a disaster, \
and the handlebars seem to have a will of their own. After it, the body simply \
corrects itself, and the rider can look at the road ahead instead of the front wheel.

Gardens change with the seasons in ways that are easy to miss from one day to the \
next. In spring the soil is dark and soft, and the first green shoots appear along \
the edges of the beds. By midsummer the same ground is hidden under leaves, flowers \
and the occasional weed that nobody had time to pull. In autumn the colours fade, \
and the gardener starts to plan what to plant the following year.

A good map leaves out almost everything. It does not show every tree, every stone or \
every puddle, because a map that showed all of them would be as large and as \
confusing as the land itself. Instead it chooses what matters for a purpose: roads \
for a driver, contour lines for a walker, depths for a sailor.

When the rain finally stopped, the children ran outside to look for puddles. Their \
parents stood at the door and called after them to keep their boots on, but the \
warning came too late for at least one of them. The street smelled of wet stone, and \
water still dripped from the gutters for a long time afterwards.

Learning a new language is slow at first because every sentence must be built by \
hand. The learner searches for words, checks the order, and worries about the ending \
of each verb. With practice, whole phrases begin to arrive at once, and the effort \
moves from building sentences to choosing between them.
"""
