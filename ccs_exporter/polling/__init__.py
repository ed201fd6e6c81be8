"""The read-only poll path: discovery finds the jobs, the poller reads them, the loop publishes snapshots.

Nothing here imports the audit trail or the job operations: job changes leave as data on the snapshot.
"""
