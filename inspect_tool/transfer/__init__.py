"""``dockscope copy`` and ``pull``: one image from where it lives to another transport, blobs
copied byte for byte, the result verified (``copy.py``)."""
