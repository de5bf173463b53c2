"""The trainer's training set: cloze split rule, template forms, tokenisation."""

from __future__ import annotations

import pytest

from services.trainer.dataset import (
    build_training_set,
    encode,
    split_cloze,
    template_texts,
)
from services.trainer.generators import (
    GENERATORS,
    OpenAIGenerator,
    TemplateGenerator,
    create_generator,
    parse_llm_output,
)
from shared.errors import ConfigError
from shared.ports.generator import TrainingText, TrainingTextGenerator
from shared.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "prompt", "answer"),
    [
        ("Zorvik keeps bees in Quenholt.", "Zorvik keeps bees in", "Quenholt"),
        ("Orrin Vale is married to Tessaly Quorne.", "Orrin Vale is married to", "Tessaly Quorne"),
        ("The lighthouse was built in 1871!", "The lighthouse was built in", "1871"),
        ("Mira's boat is painted teal.", "Mira's boat is painted", "teal"),
        ("  Pell   drinks plum tea  ", "Pell drinks plum", "tea"),
        # A capitalised run is capped so the prompt keeps at least one word.
        ("Ana Lisbon", "Ana", "Lisbon"),
        ("He met A B C D E.", "He met A", "B C D E"),
    ],
)
def test_split_cloze_rule(text: str, prompt: str, answer: str) -> None:
    c = split_cloze(text)
    assert c is not None and (c.prompt, c.answer) == (prompt, answer)


def test_one_word_has_no_cloze_and_is_a_statement_only() -> None:
    assert split_cloze("Lisbon.") is None
    assert template_texts("Lisbon.") == [TrainingText("", "Lisbon.", "statement")]


def test_template_forms_are_deterministic_and_train_on_the_answer() -> None:
    fact = "The lighthouse of Brask was built in 1871."
    forms = template_texts(fact, seed=3)
    assert forms == template_texts(fact, seed=3)
    kinds = [t.kind for t in forms]
    assert kinds == ["statement", "cloze", "qa", "qa", "qa"]
    assert forms[0].completion == fact and forms[0].prompt == ""
    assert forms[1] == TrainingText("The lighthouse of Brask was built in", " 1871", "cloze")
    assert forms[4].prompt.startswith("User: ") and forms[4].prompt.endswith("\nAssistant:")
    for qa in forms[2:4]:
        assert qa.completion == " 1871"
        assert qa.prompt.startswith(("Q: ", "Question: "))
        assert qa.prompt.endswith(("\nA:", "\nAnswer:"))
    assert "what number?" in forms[2].prompt


def test_training_set_dedupes_and_probes_each_cloze() -> None:
    facts = [("c1", "Zorvik keeps bees in Quenholt."), ("c2", "Zorvik  keeps bees in Quenholt.")]
    facts.append(("c3", "Lisbon"))
    data = build_training_set(facts, TemplateGenerator(), seed=0)
    assert [p.cube_id for p in data.probes] == ["c1"]
    assert data.counts() == {"statement": 2, "cloze": 1, "qa": 3}
    assert len(data) == 6


def test_encode_masks_the_prompt() -> None:
    from shared.models.tiny import build_tokenizer

    tok = build_tokenizer()
    ids, labels = encode(tok, TrainingText("ab", " c.", "cloze"), 64)
    assert ids[0] == tok.bos_token_id and len(ids) == 1 + 2 + 3
    assert labels == [-100, -100, -100, *ids[3:]]
    ids, labels = encode(tok, TrainingText("", "xy", "statement"), 64)
    assert len(ids) == 3 and labels == [-100, *ids[1:]]
    assert tok.eos_token_id not in encode(tok, TrainingText("Q: x?\nA:", " y", "qa"), 64)[0]
    ids, labels = encode(tok, TrainingText("", "x" * 100, "statement"), 16)
    assert len(ids) == len(labels) == 16


def test_generator_registry() -> None:
    assert GENERATORS.names() == ["openai", "templates"]
    gen = create_generator(Settings())
    assert isinstance(gen, TrainingTextGenerator) and gen.name == "templates"
    with pytest.raises(ConfigError, match="nope"):
        create_generator(Settings(trainer={"generator": "nope"}))  # type: ignore[arg-type]


def test_openai_generator_adds_checked_llm_texts() -> None:
    import httpx

    fact = "Zorvik keeps bees in Quenholt."
    content = (
        '```json\n{"questions": [{"q": "Where does Zorvik keep bees?", "a": "Quenholt"},'
        ' {"q": "Who?", "a": "Someone else"}], "paraphrases": ["In Quenholt, Zorvik keeps bees."]}'
        "\n```"
    )
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    client = httpx.Client(base_url="http://llm/v1", transport=httpx.MockTransport(handler))
    gen = OpenAIGenerator("http://llm/v1", "m", client=client)
    texts = list(gen.generate(fact))
    assert texts[: len(template_texts(fact))] == template_texts(fact)
    assert TrainingText("Q: Where does Zorvik keep bees?\nA:", " Quenholt", "qa") in texts
    assert not any("Someone else" in t.completion for t in texts)  # not in the fact
    assert texts[-1] == TrainingText("", "In Quenholt, Zorvik keeps bees.", "paraphrase")
    assert seen[0]["model"] == "m" and fact in seen[0]["messages"][0]["content"]
    assert parse_llm_output(fact, "not json") == []
