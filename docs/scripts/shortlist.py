"""The pipeline's shortlist rule, for the offline sweeps (rerank/objects.py's CompositionScorer.score):
the `short` best candidates of a prompt by the cosine get their view terms, the others the smallest of
those, so the views never lift an image the cosine left out. Imported by sweep.py, slot_sweep.py and
object_consensus.py (run from the repository root: `python docs/scripts/NAME.py ...`)."""
import numpy as np


def consensus(emb):
    """(P, K, D) unit embeddings -> (P, K) each candidate's mean cosine with its fellow candidates."""
    sim = np.einsum('pid,pjd->pij', emb, emb)
    return (sim.sum(2) - 1) / (emb.shape[1] - 1)


def shortlist_pick(cos, cons, terms, short, consensus_weight):
    """(P, K) cosines, consensus and view terms -> (P,) the candidate each prompt picks."""
    order = np.argsort(-cos, axis=1, kind='stable')[:, :short]
    extra = np.zeros_like(cos)
    for p in range(len(cos)):
        top = order[p]
        extra[p] = terms[p, top].min()
        extra[p, top] = terms[p, top]
    return (cos + consensus_weight * cons + extra).argmax(1)
