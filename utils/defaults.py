"""The paper's model and data defaults, stated once (docs/csakd.md §5.1): the network constructors
(``models.dts``), the option declarations (``models.family``, ``data.options.DATA_DEFAULTS``) and the
readers all take their defaults from here.
"""

from __future__ import annotations

BANDS = 172  # AVIRIS LR-HSI / output bands C (official --bands)
MSI_BANDS = 4  # HR-MSI bands M (official --msi_bands; 4 or 6)
SCALE = 4  # HR-MSI / LR-HSI size ratio s
NUM_BASE_CHS = 86  # stream width nf (official --num_base_chs)
NUM_AGG_FEAT = 43  # CLRA dense growth width gc (official --num_agg_feat)
GROUPS = 1  # groups of the head conv (official --groups)
SEED = 1029  # official --SEED
