"""``source = "text"``: text-encoder concepts, PCBM's multimodal bank."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conceptlab.concepts.annotations import read_phrases
from conceptlab.concepts.sources.base import ConceptSourceError, SourceContext, resolve_path
from conceptlab.concepts.text import text_concepts
from conceptlab.data.shapes_facts import shapesworld_text_prompts
from conceptlab.registry import register_concept_source

__all__ = ["TEXT_SETS", "text_source"]

#: named prompt sets: concept name -> prompt
TEXT_SETS = {"shapesworld": shapesworld_text_prompts}


def _validate(config: Mapping[str, Any]) -> None:
    if config["set"] not in (None, "") and config["set"] not in TEXT_SETS:
        raise ConceptSourceError(f"unknown text concept set {config['set']!r}; known: {', '.join(TEXT_SETS)}")
    prompts = config["prompts"]
    if prompts is not None and (not isinstance(prompts, dict) or not all(isinstance(v, (str, list)) for v in prompts.values())):
        raise ConceptSourceError("[concepts.prompts] must map concept names to a prompt string (or a list of them)")
    if config["templates"] and not all("{}" in t for t in config["templates"]):
        raise ConceptSourceError("every template must contain '{}'")


@register_concept_source(
    "text", keys={"set": "shapesworld", "path": "", "names": None, "prompts": None, "templates": None}, validate=_validate,
    description="text-encoder concepts (PCBM's multimodal bank); set = \"shapesworld\" gives the 25 ShapesWorld prompts, "
    "path = \"concepts.txt\" one concept per line",
)
def text_source(config: Mapping[str, Any], context: SourceContext):
    if config["path"]:  # the user's own phrases replace the named set
        try:
            prompts = {p: p for p in read_phrases(resolve_path(config["path"], context))}
        except (FileNotFoundError, ValueError) as error:
            raise ConceptSourceError(f"path: {error}") from None
    else:
        prompts = dict(TEXT_SETS[config["set"]]()) if config["set"] else {}
    prompts.update(config["prompts"] or {})
    names = list(config["names"]) if config["names"] else list(prompts)
    missing = [n for n in names if n not in prompts]
    if missing:
        raise ConceptSourceError(f"names {missing} have no prompt in set {config['set']!r} or [concepts.prompts]")
    if not names:
        raise ConceptSourceError("the text source has no concepts: give set = \"shapesworld\" or a [concepts.prompts] table")
    return text_concepts(context.backbone, names, templates=config["templates"], prompts={n: prompts[n] for n in names})
