"""Evaluation: generate answers to AlpacaEval 2.0 + Arena-Hard prompts, judge them, summarise."""

from ..config import EvalConfig
from .evalset import DEFAULT_EVAL_SET, EVAL_CONFIGS, load_eval_set
from .judges import PairwiseJudge, parse_verdict, reference_nll
from .run import evaluate_model

__all__ = [
    "DEFAULT_EVAL_SET", "EVAL_CONFIGS", "EvalConfig", "PairwiseJudge", "evaluate_model", "load_eval_set",
    "parse_verdict", "reference_nll",
]
