"""The image codec built on meta-learned sparse modulations (MSCN App. D.1, after COIN++).

- :mod:`.format`: the model-independent layer: the file container (:mod:`.format.bitstream`),
  quantisation (:mod:`.format.quantize`) and range coding (:mod:`.format.entropy`).
- :mod:`.model`: image and signal codecs (compress, decompress, codec model files).
- :mod:`.build`: codec models made from trained networks; :mod:`.zoo`: the bundled ones.
- :mod:`.rd`: rate-distortion comparison; :mod:`.baselines`: the classical codecs it compares with.
"""
