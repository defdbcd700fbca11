"""The quality harness: the papers' ablation, N1 sweep and cluster analysis.

`duia bench quality` trains every model variant on the same split with the
same seeds (the pipeline up to Transform, then the Trainer's code in this
process), evaluates them with TFMA against the same-seed PLE model as the
baseline (paired uplift per slice, with confidence intervals), sweeps the
number of level-1 centers (DUIA Table 7) with their hit rate (Table 9), and
writes a JSON, a Markdown report shaped like DUIA Table 5 and PNG plots.

Modules: `spec` (what runs), `data` (which logs), `training` (one model with the Trainer's code),
`tfma_eval` (EvalConfig with a baseline, metrics with bounds), `uplift`
(seed-paired summaries), `harness` (the runs), `tables` and `plots` (outputs).
"""
