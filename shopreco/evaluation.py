"""The served-path evaluation (:mod:`shopreco.pipeline.evaluation`), under its public name.

It lives in the pipeline because every full run's holdout gate scores its candidates with
it; commands, admin and benchmarks import it from here."""

from shopreco.pipeline.evaluation import (
    PROTOCOLS,
    EvaluationError,
    evaluate,
    fit,
    list_metrics,
    personal_lists,
    similar_lists,
    split,
)

__all__ = ["PROTOCOLS", "EvaluationError", "evaluate", "fit", "list_metrics",
           "personal_lists", "similar_lists", "split"]
