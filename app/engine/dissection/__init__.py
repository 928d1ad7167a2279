"""Network Dissection (Bau et al. 2017) and its relatives, in torch and numpy: the top activations of each
unit over a dataset (`top_activations.py`), the exact quantile threshold and the unit's upsampled region
rebuilt from them (`region.py`), pixel tallies against concept labels grouped by signature (`signatures.py`,
`tally.py`), IoU labels and compositional labels by beam search (`labels.py`, Mu & Andreas 2020), and
class selectivity as ROC AUC (`auc.py`). Formulas: docs/concepts.md."""
