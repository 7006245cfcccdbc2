"""Every benchmark, one file each; importing this package registers them all."""

from . import (  # noqa: F401
    activitynet_stream,
    dlc_bench,
    ferret,
    gstdc,
    hc_stvg,
    lvis,
    paco,
    quickstart,
    ref_l4,
    refcocog,
    vg,
    videorefer_d,
    videorefer_q,
)
