"""The package's lists of choices, in one torch-free place.

The CLI's ``choices=``, the docks' combo boxes, the config validators and the model file all read
these tuples, so a name is spelled once. Importing this module imports nothing heavy.
"""

from __future__ import annotations

__all__ = [
    "REALISATION_SIDE",
    "VALIDATION_REALISATIONS",
    "ADV_LOSSES",
    "ADV_PICKS",
    "AUTO",
    "ALGORITHMS",
    "BALANCES",
    "ANISOTROPIES",
    "ESTIMATORS",
    "FIELD_TYPES",
    "LEVELS",
    "MINKOWSKI_REFRESH",
    "MINKOWSKI_WEIGHT",
    "CALIBRATION_MODEL",
    "COARSE_OPERATORS",
    "MAX_COARSE_RATIO",
    "MODEL_CHOICES",
    "PLANES",
    "RULES",
    "THRESHOLDS",
    "TRANSPORT_ITER_LIMIT",
    "TRANSPORT_SOLVERS",
    "VARIANTS",
    "WEIGHTINGS",
]

#: Model variants: low- / high-parametric covariances, isotropic / cylindrically isotropic.
VARIANTS = ("lp-iso", "lp-cyl", "hp-iso", "hp-cyl")
#: "Choose for me": structure selection for ``calibrate --model``, the best device for ``--device``.
AUTO = "auto"
#: What ``calibrate --model`` accepts: a variant, or ``auto`` (select the structure first).
MODEL_CHOICES = (*VARIANTS, AUTO)
#: What ``assb-twin calibrate`` (and a calibration job) does without ``--model``: select the structure
#: first (rules, field types and levels from the 2D topology; issue 12, docs/benchmarks.md "Fidelity")
CALIBRATION_MODEL = AUTO
#: Calibration algorithms (METHOD.md section 7): 1 coverage matching, 2 adversarial, 3 combined.
ALGORITHMS = ("coverage", "adversarial", "combined")
#: Differentiable thresholding of the model's phase maps during training.
THRESHOLDS = ("soft", "st")
#: How the model's C_ij are obtained during coverage matching: exact expectation or simulated sections.
ESTIMATORS = ("analytic", "sampled")
#: Weighting of the coverage loss over lags and pairs.
WEIGHTINGS = ("variance", "uniform")
#: Discriminator losses.
ADV_LOSSES = ("wgan-gp", "bce")
#: How algorithm 3 weighs its two terms: the raw sum ``generator + alpha * coverage``, or each
#: term's gradient divided by a running mean of its own norm (``alpha`` = relative weight).
BALANCES = ("none", "gradient")
#: Which model an adversarial or combined stage returns: the lowest coverage loss seen, the last
#: parameters, or their average over the stage's final ``average_last`` fraction.
ADV_PICKS = ("coverage", "last", "average")
#: Random-field types of the excursion-set model.
FIELD_TYPES = ("gaussian", "chi2")
#: Level-set directions: {F <= t} and {F >= t}.
LEVELS = ("lower", "upper")
#: Covariance anisotropies.
ANISOTROPIES = ("isotropic", "cylindrical")
#: How a coarse 3D volume was made from the fine structure (calibrate/coarse.py): block average of
#: r^3 voxels then segmented (the first, the default), or one voxel of every block.
COARSE_OPERATORS = ("block", "subsample")
#: Largest resolution ratio (coarse voxel / fine pixel). Selection compares the coarse volume's crops of
#: at least 16 voxels (calibrate/coarse.py, ``MIN_COARSE_CROP``) with twins simulated ``ratio`` times
#: finer and coarse-grained: 256^3 fine voxels at 16 (seven Gaussian fields, ~4 s and ~0.5 GiB here),
#: 512^3 at 32 (8x both, for each of ~50 twins). Beyond it, downsampling the sections to a ratio of 16
#: (still 16 fine pixels per coarse voxel) costs far less than such twins.
MAX_COARSE_RATIO = 16
#: Section planes relative to the model's symmetry axis.
PLANES = ("inplane", "axial")
#: Truncation-rule families (model/rules.py registers one builder under each name).
RULES = ("sequential", "interval", "coating", "adhering")
#: Transport solvers (stats.transport): auto = AMG-CG on a CPU, TauFactor or torch CG on a GPU.
TRANSPORT_SOLVERS = ("auto", "amg", "torch-cg", "taufactor")
#: Iteration cap of every transport solver (TauFactor's default; CG needs tens to a few thousand).
TRANSPORT_ITER_LIMIT = 10000
#: Weight of the 2D Minkowski term (perimeter and Euler densities of every phase, stats.minkowski)
#: added to the coverage loss in algorithms 1 and 3 and in model selection's fits; 0 switches it off.
#: Off by default: with it (0.3 or 1) the twins' 3D transport moved further from the measured
#: volumes' on every case of docs/benchmarks.md "Fidelity" (the functionals still choose the structure
#: in model selection, where they transfer).
MINKOWSKI_WEIGHT = 0.0
#: Steps between refreshes of the term's lattice correction (simulated minus closed form; ~0.1 s each).
MINKOWSKI_REFRESH = 25
#: Realisations of the twin's model a validation measures by default (`compare`, the Validate tab):
#: five give a t interval of the model's mean (4 dof) and fit the time budget with a measured 256^3
#: volume (docs/benchmarks.md, "Validation with intervals").
VALIDATION_REALISATIONS = 5
#: Longest side of such a realisation by default (a 256^3 twin is represented by 128^3 realisations:
#: the size of the measured volume's octants, whose spread gives the measured interval).
REALISATION_SIDE = 128
