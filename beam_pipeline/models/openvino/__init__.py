"""The OpenVINO backend, one job per module, imported in one direction:

``policy`` (what the CPU runs, which precision ``auto`` means) → ``cache`` (IRs on
disk: keys, atomic save, an IR carried beside its SavedModel) → ``convert`` (a
SavedModel's clip or stream call → ``ov.Model``), ``calibration`` (clips of the job's
input, decoded in the isolated decoder) and ``quantize`` (NNCF int8) → ``ir`` (the IR of
a spec at a batch and precision: cached, else built) → ``compiled`` (a compiled IR
called on uint8 clips) and ``stream`` (a stream model's step on it) → ``backend``
(``OpenVinoBackend``, what ``models.backend.backend_for('openvino')`` gives) and
``prepare`` (the launcher's once-per-job conversion, calibration and choice).

Nothing here imports ``models.backend``; OpenVINO and TensorFlow are imported inside
the functions that need them.
"""
