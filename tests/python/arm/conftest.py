"""Fixtures for the ARM conformance tests: clients of the official Azure SDKs pointed at devcloud-arm.

The Rust test `crates/devcloud-arm/tests/python_conformance.rs` starts Azurite, the identity endpoint and
the simulator, uploads the VHDs, and runs pytest with these environment variables:
DEVCLOUD_ARM_ENDPOINT, DEVCLOUD_SUBSCRIPTION_ID, DEVCLOUD_VHD_URI, DEVCLOUD_DYNAMIC_VHD_URI,
DEVCLOUD_STORAGE_ACCOUNT_ID, IDENTITY_ENDPOINT, IDENTITY_HEADER, REQUESTS_CA_BUNDLE, SSL_CERT_FILE.
"""
import os

import pytest
from azure.identity import ManagedIdentityCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.imagebuilder import ImageBuilderClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient
from azure.mgmt.storage import StorageManagementClient

SCOPES = ["https://management.azure.com/.default"]


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set: run through cargo test -p devcloud-arm --test python_conformance")
    return value


@pytest.fixture(scope="session")
def arm():
    return env("DEVCLOUD_ARM_ENDPOINT")


@pytest.fixture(scope="session")
def subscription():
    return env("DEVCLOUD_SUBSCRIPTION_ID")


@pytest.fixture(scope="session")
def credential():
    env("IDENTITY_ENDPOINT")
    return ManagedIdentityCredential()


@pytest.fixture(scope="session")
def compute(arm, subscription, credential):
    return ComputeManagementClient(
        credential, subscription, base_url=arm, credential_scopes=SCOPES, polling_interval=0.05
    )


@pytest.fixture(scope="session")
def imagebuilder(arm, subscription, credential):
    return ImageBuilderClient(
        credential, subscription, base_url=arm, credential_scopes=SCOPES, polling_interval=0.05
    )


@pytest.fixture(scope="session")
def resources(arm, subscription, credential):
    return ResourceManagementClient(
        credential, subscription, base_url=arm, credential_scopes=SCOPES, polling_interval=0.05
    )


@pytest.fixture(scope="session")
def group(resources):
    """The scenario's resource group, created as a user would before anything goes in it."""
    created = resources.resource_groups.create_or_update("rg-conformance", {"location": "westeurope"})
    assert created.properties.provisioning_state == "Succeeded"
    return created.name


@pytest.fixture(scope="session")
def subscriptions(arm, credential):
    return SubscriptionClient(credential, base_url=arm, credential_scopes=SCOPES)


@pytest.fixture(scope="session")
def storage(arm, subscription, credential):
    return StorageManagementClient(credential, subscription, base_url=arm, credential_scopes=SCOPES)
