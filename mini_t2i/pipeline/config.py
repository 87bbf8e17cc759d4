"""`PipelineConfig`: a pipeline folder's pipeline.yaml, the defaults of `TextToImagePipeline.__call__`
(sampling settings, the reranking's weights, the demo's examples)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PipelineConfig:
    """Defaults of `TextToImagePipeline.__call__`, saved as pipeline.yaml."""
    name: str = "mini-t2i"
    num_candidates: int = 8  # images sampled per returned image set; the reranker keeps the best
    guidance_scale: float = 1.0  # classifier-free guidance (1 = off)
    guidance_schedule: str = "constant"  # or "rising": from ~1 at the first token to guidance_scale at the last
    temperature: float = 1.0
    top_k: int = 32  # 0 = off
    top_p: float = 1.0  # 1 = off
    batch_size: int = 32  # sequences sampled at once (x2 with guidance)
    # The decoder's matmul weights: "fp32", or "fp16" / "int8" copies made at first use
    # (transformer/quantize.py; CPU only, docs/speed.md for speed and the quality check), "fused"
    # (fp16 weights and cache, each forward one compiled C call: transformer/fused.py), or
    # "auto": fused where its C step builds (x86 with AVX2/F16C/FMA and a C compiler), else int8 on a
    # CPU with int8 dot products (VNNI, AMX), fp16 on other CPUs; fp32 off the CPU (quantize.auto_decode_weights).
    decode_weights: str = "fp32"
    # Reranking of captions that name a side ("A left of B", "A above B"): the cosine plus this weight
    # x the reranker's cut-view relation contrast (rerank/relations.py); 0 = the cosine alone.
    relation_weight: float = 0.0
    # Reranking by objects (rerank/objects.py): each object of a candidate alone against each object the
    # caption names, and the candidates' agreement. Either above 0 switches to that scorer, whose
    # relation term (relation_weight) is read between the objects instead of across the cuts.
    object_weight: float = 0.0
    consensus_weight: float = 0.0
    examples: list[str] = field(default_factory=list)  # prompts the demo and the model card show

    def __post_init__(self) -> None:
        for name in ("relation_weight", "object_weight", "consensus_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0 = the term is off)")

    def scorer(self, reranker, tokenizer):
        """What reranks this pipeline's candidates: the reranker, or a scorer around it with its signature."""
        if self.object_weight > 0 or self.consensus_weight > 0:
            from mini_t2i.rerank.objects import CompositionScorer

            return CompositionScorer(reranker, tokenizer, self.object_weight, self.relation_weight, self.consensus_weight)
        if self.relation_weight > 0:
            from mini_t2i.rerank.relations import RelationScorer

            return RelationScorer(reranker, tokenizer, self.relation_weight)
        return reranker
