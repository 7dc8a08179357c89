"""V2C-CBM (He et al., AAAI 2025): LaBo's bottleneck over the V2C tokenizer's concepts."""

from __future__ import annotations

from conceptlab.cbm.methods.labo import LaBo
from conceptlab.registry import register_method

__all__ = ["V2CCBM"]


@register_method("v2c", description="V2C-CBM: LaBo's bottleneck over V2C tokenizer concepts, token-frequency prior")
class V2CCBM(LaBo):
    """V2C-CBM: LaBo's bottleneck over the V2C tokenizer's concepts, with no selection.

    Build the bank with :meth:`conceptlab.concepts.v2c.V2CTokenizer.to_concept_set` and
    :func:`~conceptlab.concepts.concept_bank_from_set`, so each concept carries the classes whose top tokens it is
    and its token count in each.

    **Concept prior (our choice; the authors did not release theirs).** A₀[k, j] =
    init_val · f_k(j) / max_j' f_k(j'), where f_k(j) is how often token j was among the top-5
    tokens of class k's quantisation images, for every class whose list holds token j (0
    elsewhere). Why: the counts are the evidence the tokenizer found for each class-concept link,
    so a token hit by most of a class's images starts stronger than one that scraped into the
    top 50; a token shared by several classes is linked to all of them instead of to an arbitrary
    first one (LaBo's dedupe); and the scale (max 1 = LaBo's init_val) keeps LaBo's starting
    temperature, so LaBo's learning rates carry over. ``prior="first"`` gives LaBo's 0/1 prior.
    """

    display_name = "V2C-CBM"
    how_it_predicts = LaBo.how_it_predicts.replace("**LaBo** (Language in a Bottle)", "**V2C-CBM** (LaBo's head over vision-to-concept tokens)")

    default_prior = "frequency"
