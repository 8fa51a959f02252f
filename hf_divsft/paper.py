"""The paper this package implements, cited by the measurement modules and dataset cards."""

PAPER_TITLE = "From Macro to Micro: Probing Dataset Diversity in Language Model Fine-Tuning"
PAPER_URL = "https://arxiv.org/abs/2505.24768"
PAPER_CITATION = """\
@inproceedings{li2026macro,
  title         = {From Macro to Micro: Probing Dataset Diversity in Language Model Fine-Tuning},
  author        = {Li, Haoyu and Liu, Kun and Li, Xuhong and Dong, Yiming and others},
  booktitle     = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year          = {2026},
  eprint        = {2505.24768},
  archivePrefix = {arXiv}
}"""
