"""`motif-video serve`: a video generation service.

- `fields`: a job's request fields and the service's limits (the options' checks are the library's own);
- `store`: the queue and job records in SQLite or PostgreSQL (atomic claims, leases, re-queue);
- `worker`: a process with a warm pipeline that runs jobs and reports progress per step;
- `app`: the HTTP API and the web page (FastAPI);
- `server`: the `serve` command's API process and its worker processes.

Needs the `serve` extra (`pip install 'motif-video[serve]'`): FastAPI, uvicorn, python-multipart, and psycopg for
PostgreSQL.
"""
