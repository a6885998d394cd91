"""Objects in the local S3 server (AWS_ENDPOINT_URL) for the benchmarks that use it.

    python benches/s3_objects.py upload DIR BUCKET PREFIX   # every file of DIR (bucket made)
    python benches/s3_objects.py md5 BUCKET PREFIX          # "md5 name" of each .parquet
    python benches/s3_objects.py clear BUCKET PREFIX        # delete everything under PREFIX
"""
import hashlib
import os
import sys

import boto3


def objects(s3, bucket, prefix):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    if cmd == "upload":
        src, bucket, prefix = args
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        for name in sorted(os.listdir(src)):
            path = os.path.join(src, name)
            if os.path.isfile(path):
                s3.upload_file(path, bucket, f"{prefix.rstrip('/')}/{name}")
    elif cmd == "md5":
        bucket, prefix = args[0], args[1].rstrip("/") + "/"
        for o in objects(s3, bucket, prefix):
            if o["Key"].endswith(".parquet"):
                body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                print(hashlib.md5(body).hexdigest(), o["Key"][len(prefix):])
    elif cmd == "clear":
        bucket, prefix = args[0], args[1].rstrip("/") + "/"
        for o in objects(s3, bucket, prefix):
            s3.delete_object(Bucket=bucket, Key=o["Key"])
    else:
        sys.exit(f"unknown command {cmd!r}: upload, md5 or clear")


if __name__ == "__main__":
    main()
