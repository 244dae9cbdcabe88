"""frcnn_edu.instruments: what the tests, benchmarks and notebooks measure the detector with, never used by it.

    twin.torchvision_twin(model)   the same modules and weights inside torchvision's FasterRCNN (parity, timing)
    syncs.count_python_reads(...)  host round-trips: Python-level reads and ops whose output the host must learn
"""
