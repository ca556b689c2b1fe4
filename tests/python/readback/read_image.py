"""Reads an image definition and one of its versions back through the official azure-mgmt-compute SDK and
prints them as JSON ({"definition": ..., "version": ...}), as Azure's own client models them.

Used by crates/devcloud/tests/features.rs against the local cloud. Environment: DEVCLOUD_ARM_ENDPOINT,
AZURE_SUBSCRIPTION_ID, IDENTITY_ENDPOINT, IDENTITY_HEADER, REQUESTS_CA_BUNDLE (from devcloud's
connection.env). Arguments: resource group, gallery, image definition, version.
"""
import json
import os
import sys

from azure.identity import ManagedIdentityCredential
from azure.mgmt.compute import ComputeManagementClient


def main(group, gallery, definition, version):
    client = ComputeManagementClient(
        ManagedIdentityCredential(),
        os.environ["AZURE_SUBSCRIPTION_ID"],
        base_url=os.environ["DEVCLOUD_ARM_ENDPOINT"],
        credential_scopes=["https://management.azure.com/.default"],
    )
    d = client.gallery_images.get(group, gallery, definition)
    v = client.gallery_image_versions.get(group, gallery, definition, version)
    json.dump({"definition": d.as_dict(), "version": v.as_dict()}, sys.stdout, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:5])
