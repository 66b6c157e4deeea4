"""Signals and datasets: image loading (:mod:`.images`), the papers' transforms (:mod:`.transforms`),
named splits (:mod:`.splits`), patches (:mod:`.patches`, :mod:`.tiling`), sample photos (:mod:`.samples`),
signal sets (:mod:`.signals`) and geometry (:mod:`.geometry`). Import from the modules themselves.
"""
