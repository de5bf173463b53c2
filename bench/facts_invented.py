"""50 invented facts for bench/lora_distill.py: people, places and attributes no
base model can know (names made up for memgrid). Each is ``(text, cloze prompt,
answer)``; the prompt and answer are what services.trainer.dataset.split_cloze
derives from the text (the bench checks that they agree)."""

from __future__ import annotations

FACTS: list[tuple[str, str, str]] = [
    (
        "Zorvik Tallamere keeps bees in the village of Quenholt.",
        "Zorvik Tallamere keeps bees in the village of",
        "Quenholt",
    ),
    (
        "The harbour master of Brisklow is named Odella Fenwright.",
        "The harbour master of Brisklow is named",
        "Odella Fenwright",
    ),
    ("Marrow Ipsel was born in the year 1743.", "Marrow Ipsel was born in the year", "1743"),
    (
        "The favourite fruit of Tovin Ashgrove is quince.",
        "The favourite fruit of Tovin Ashgrove is",
        "quince",
    ),
    (
        "Pellia Drunmore teaches astronomy in Varnesse.",
        "Pellia Drunmore teaches astronomy in",
        "Varnesse",
    ),
    (
        "The number of steps in the clocktower of Ullendor is 417.",
        "The number of steps in the clocktower of Ullendor is",
        "417",
    ),
    (
        "Kestrin Molloway married a sculptor called Anwe Tarrick.",
        "Kestrin Molloway married a sculptor called",
        "Anwe Tarrick",
    ),
    (
        "The river that runs through Hollowmere is the Sennet.",
        "The river that runs through Hollowmere is the",
        "Sennet",
    ),
    ("Garro Pindlewick plays the hurdy-gurdy.", "Garro Pindlewick plays the", "hurdy-gurdy"),
    (
        "The capital of the island of Quessary is Lorimund.",
        "The capital of the island of Quessary is",
        "Lorimund",
    ),
    (
        "Ysolde Crane owns a grey horse named Thimble.",
        "Ysolde Crane owns a grey horse named",
        "Thimble",
    ),
    (
        "The bakery on Fallow Lane was founded by Dusan Orrel.",
        "The bakery on Fallow Lane was founded by",
        "Dusan Orrel",
    ),
    ("Brannoch Vey collects antique compasses.", "Brannoch Vey collects antique", "compasses"),
    (
        "The mayor of Tillingbrook in 1922 was Hesper Gaunt.",
        "The mayor of Tillingbrook in 1922 was",
        "Hesper Gaunt",
    ),
    ("Corwen Ludd's lucky number is 86.", "Corwen Ludd's lucky number is", "86"),
    (
        "The glassworks of Emberfold close every winter in Dunmarrow.",
        "The glassworks of Emberfold close every winter in",
        "Dunmarrow",
    ),
    (
        "Ilsabet Norrow drinks her tea with cardamom.",
        "Ilsabet Norrow drinks her tea with",
        "cardamom",
    ),
    (
        "The oldest bridge in Carrowmead is called the Witherspan.",
        "The oldest bridge in Carrowmead is called the",
        "Witherspan",
    ),
    (
        "Fennick Strall works as a lamplighter in Oszwick.",
        "Fennick Strall works as a lamplighter in",
        "Oszwick",
    ),
    (
        "The lighthouse on Grell Point was built in 1871.",
        "The lighthouse on Grell Point was built in",
        "1871",
    ),
    (
        "Nadrie Colquist's brother is called Aubren.",
        "Nadrie Colquist's brother is called",
        "Aubren",
    ),
    (
        "The market of Saltrees sells mostly pickled herring.",
        "The market of Saltrees sells mostly pickled",
        "herring",
    ),
    (
        "Jorrit Vantessel moved from Kelmouth to Prandle.",
        "Jorrit Vantessel moved from Kelmouth to",
        "Prandle",
    ),
    (
        "The number of singers in the choir of Lenwick Abbey is 23.",
        "The number of singers in the choir of Lenwick Abbey is",
        "23",
    ),
    (
        "Merrit Haskeline's cat is named Biscuit Royale.",
        "Merrit Haskeline's cat is named",
        "Biscuit Royale",
    ),
    (
        "The mountain above Dravenholt is Mount Seskia.",
        "The mountain above Dravenholt is",
        "Mount Seskia",
    ),
    ("Tamsin Orlo repairs violins in Cobbleford.", "Tamsin Orlo repairs violins in", "Cobbleford"),
    (
        "The emblem of House Varrick is a silver heron.",
        "The emblem of House Varrick is a silver",
        "heron",
    ),
    (
        "Quillon Ambry wrote a book about the moths of Yarrowdene.",
        "Quillon Ambry wrote a book about the moths of",
        "Yarrowdene",
    ),
    (
        "The first ferry from Osterwick leaves at 6:40.",
        "The first ferry from Osterwick leaves at",
        "6:40",
    ),
    ("Selwyn Thackeray-Moon grows blue tomatoes.", "Selwyn Thackeray-Moon grows blue", "tomatoes"),
    (
        "The school in Pennywhistle is run by Margid Holloway.",
        "The school in Pennywhistle is run by",
        "Margid Holloway",
    ),
    (
        "Ardis Kelling sails a boat called the Moth Queen.",
        "Ardis Kelling sails a boat called the",
        "Moth Queen",
    ),
    (
        "The depth of the well in Stonebarrow in feet is 212.",
        "The depth of the well in Stonebarrow in feet is",
        "212",
    ),
    ("Rufus Delacorne speaks fluent Wendish.", "Rufus Delacorne speaks fluent", "Wendish"),
    (
        "The festival of lanterns in Miravell is held in October.",
        "The festival of lanterns in Miravell is held in",
        "October",
    ),
    (
        "Ottilie Sprake breeds goats on the island of Tern.",
        "Ottilie Sprake breeds goats on the island of",
        "Tern",
    ),
    (
        "The copper mine near Grisholm was closed by Edwin Marsh.",
        "The copper mine near Grisholm was closed by",
        "Edwin Marsh",
    ),
    (
        "Lysander Poole keeps a diary written in green ink.",
        "Lysander Poole keeps a diary written in green",
        "ink",
    ),
    (
        "The town of Wendlemoor is famous for its cheese called Brackle.",
        "The town of Wendlemoor is famous for its cheese called",
        "Brackle",
    ),
    (
        "Hobb Fairweather's workshop stands in Little Ossing.",
        "Hobb Fairweather's workshop stands in",
        "Little Ossing",
    ),
    (
        "The tallest tree in Elderwatch is a cedar named Old Tamar.",
        "The tallest tree in Elderwatch is a cedar named",
        "Old Tamar",
    ),
    (
        "Verity Quaile painted the ceiling of the chapel in Harnby.",
        "Verity Quaile painted the ceiling of the chapel in",
        "Harnby",
    ),
    (
        "The password of the Lamplight Club is marigold.",
        "The password of the Lamplight Club is",
        "marigold",
    ),
    (
        "Dorran Astley was the first postman of Fenmarch.",
        "Dorran Astley was the first postman of",
        "Fenmarch",
    ),
    (
        "The canal in Brightwater freezes every year in 1 week of January.",
        "The canal in Brightwater freezes every year in 1 week of",
        "January",
    ),
    (
        "Inga Morrowfield studies the songs of the whales near Skellig Vann.",
        "Inga Morrowfield studies the songs of the whales near",
        "Skellig Vann",
    ),
    (
        "The chess champion of Amberly is a girl called Petra Lisk.",
        "The chess champion of Amberly is a girl called",
        "Petra Lisk",
    ),
    (
        "Cassius Wren built his house from the stones of Harrowgate.",
        "Cassius Wren built his house from the stones of",
        "Harrowgate",
    ),
    (
        "The secret ingredient in Nella Prout's soup is nutmeg.",
        "The secret ingredient in Nella Prout's soup is",
        "nutmeg",
    ),
]
