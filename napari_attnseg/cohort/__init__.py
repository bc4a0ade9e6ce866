"""Cohort inference: one model over many inputs, resumable, serially or on a Dask cluster.

    >>> from napari_attnseg.cohort import predict_cohort
    >>> summary = predict_cohort("brain-mri-3d", "scans/*.nii.gz", "out/")           # this process
    >>> summary = predict_cohort("brain-mri-3d", "scans/", "out/", client=client)     # Dask workers

* **Inputs**: a folder (its images and DICOM series folders), a glob, a CSV (a column of paths), a
  single file, or a list of any of these.
* **Overlap of disk and compute**: each case runs as read -> compute -> write, and only the compute
  holds the *compute slot* (one per process or Dask worker, so one model on one device). With
  ``prefetch`` extra threads the next case is read, and the previous one written, while the current
  one computes. ``wait_s`` is the time the slot sat idle waiting for a case's input.
* **Resumable**: a case whose ``<stem>_predict.json`` records the same weights (sha256) and the same
  request is skipped; outputs of another model or other settings are replaced, as are the leftovers
  of a killed run; outputs that may hold a user's corrections are replaced only with ``overwrite``
  (see :func:`napari_attnseg.results.case_state`), and a mask changed since attnseg wrote it is then
  moved to ``out/edited_masks/``, never deleted. Every file is written atomically, the record last.
* **Failures**: a failed case is reported in the summary and the others run.
* **Summary**: ``cohort_summary.csv`` in ``out`` gathers the runs into that folder: a run's rows (with
  its start time, ``run``) replace those of its cases; the rows of other cases stay. A file of that name
  that this command did not write is refused before any case (``overwrite`` keeps it, renamed
  ``cohort_summary.yours.csv``); columns a user added to a summary of ours are kept.
* **Dask**: tasks are cases; each worker process loads the model once and keeps it; a case whose
  worker died is rerun elsewhere (Dask's ``allowed-failures``) and one that raised an unexpected
  error is retried ``retries`` times. Outputs are written by the workers: ``out`` must be on a file
  system every worker sees.

No Qt or napari here; ``distributed`` is imported only when a client is given.
"""


from .cases import SUMMARY_COLUMNS, SUMMARY_NAME, CaseResult, CohortSummary
from .inputs import collect_inputs
from .run import predict_cohort
from .workers import dask_client

__all__ = ["SUMMARY_COLUMNS", "SUMMARY_NAME", "CaseResult", "CohortSummary", "collect_inputs", "dask_client",
           "predict_cohort"]
