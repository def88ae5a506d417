"""The exact fast formulation of the reference FCN, over the reference model's variables.

:mod:`.program` runs the network; :mod:`.convolutions` and :mod:`.margin` hold
the arithmetic it rearranges. Nothing here defines a layer: the model's graph
stays the reference's.
"""
