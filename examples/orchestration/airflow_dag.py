"""Airflow DAG: N kiln workers as mapped KubernetesPodOperator tasks, then finalize.

Each mapped task is one worker (`--worker I/N`). Airflow retries a failed worker, which
resumes from its committed tasks; `kiln finalize` writes the manifest if the last worker
did not (it is a no-op on a complete dataset).
"""

from datetime import datetime

from airflow import DAG
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

WORKERS = 8
SINK = "s3://training/web-text/v1/"
IMAGE = "ghcr.io/example/kiln:0.1.0"

with DAG(
    dag_id="kiln_web_text",
    start_date=datetime(2026, 11, 1),
    schedule=None,
    catchup=False,
) as dag:
    workers = KubernetesPodOperator.partial(
        task_id="kiln_worker",
        name="kiln-worker",
        image=IMAGE,
        retries=3,
    ).expand(
        arguments=[
            ["run", "/pipelines/web-text.yaml", "--worker", f"{i}/{WORKERS}", "--set", f"sink.uri={SINK}"]
            for i in range(WORKERS)
        ]
    )
    finalize = KubernetesPodOperator(
        task_id="kiln_finalize",
        name="kiln-finalize",
        image=IMAGE,
        arguments=["finalize", SINK],
    )
    workers >> finalize
