"""Creates a container in Azurite (object_store cannot): azure_container.py URL NAME.

Uses Azurite's well-known development account, whose key is public."""

import sys

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

url, name = sys.argv[1], sys.argv[2]
conn = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    f"BlobEndpoint={url}/devstoreaccount1;"
)
try:
    BlobServiceClient.from_connection_string(conn).create_container(name)
except ResourceExistsError:
    pass
