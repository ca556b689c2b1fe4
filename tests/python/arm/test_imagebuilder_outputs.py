"""Image Builder's outputs and the VM image versions API through the official SDKs
(azure-mgmt-compute, azure-mgmt-imagebuilder): a platform image release seen by `list`, and a run
whose managed image has the source's OS type while an injected distribution failure makes it
PartiallySucceeded."""
import requests

RG = "rg-conformance"
LOC = "westeurope"
JAMMY = ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2")


def props(resource):
    return resource["properties"]


def latest(compute):
    found = compute.virtual_machine_images.list(LOC, *JAMMY, top=1, orderby="name desc")
    assert len(found) == 1
    return found[0]["name"]


def test_platform_image_versions_and_a_new_release(compute, arm):
    versions = [v["name"] for v in compute.virtual_machine_images.list(LOC, *JAMMY)]
    assert versions == sorted(versions, key=lambda v: [int(p) for p in v.split(".")])
    before = latest(compute)
    assert before == versions[-1]
    one = compute.virtual_machine_images.get(LOC, *JAMMY, before)
    assert props(one)["osDiskImage"]["operatingSystem"] == "Linux"
    assert props(one)["hyperVGeneration"] == "V2"
    # A new base image is released: it becomes the latest.
    released = requests.post(f"{arm}/_devcloud/platform-images", timeout=10, json={
        "publisher": JAMMY[0], "offer": JAMMY[1], "sku": JAMMY[2], "version": "22.04.209912310"})
    assert released.status_code == 201, released.text
    assert latest(compute) == "22.04.209912310"


def test_managed_image_output_and_partial_success(group, compute, imagebuilder, arm, subscription):
    image_id = f"/subscriptions/{subscription}/resourceGroups/{RG}/providers/Microsoft.Compute/images/aib-win"
    imagebuilder.virtual_machine_image_templates.begin_create_or_update(
        RG, "aib-outputs",
        {"location": LOC, "identity": {"type": "None"},
         "properties": {
             "source": {"type": "PlatformImage", "publisher": "MicrosoftWindowsServer", "offer": "WindowsServer",
                        "sku": "2022-datacenter-azure-edition", "version": "latest"},
             "distribute": [
                 {"type": "ManagedImage", "imageId": image_id, "location": LOC, "runOutputName": "image"},
                 {"type": "VHD", "runOutputName": "vhd"}]}},
    ).result()
    fault = requests.post(f"{arm}/_devcloud/faults", timeout=10, json={
        "kind": "VirtualMachineImageTemplates_Run", "count": 1,
        "action": {"type": "failDistribute", "runOutputName": "vhd", "message": "Disk export failed."}})
    assert fault.status_code == 201, fault.text
    imagebuilder.virtual_machine_image_templates.begin_run(RG, "aib-outputs").result()
    status = props(imagebuilder.virtual_machine_image_templates.get(RG, "aib-outputs"))["lastRunStatus"]
    assert status["runState"] == "PartiallySucceeded", status
    assert "Disk export failed." in status["message"]
    outputs = list(imagebuilder.virtual_machine_image_templates.list_run_outputs(RG, "aib-outputs"))
    assert [o["name"] for o in outputs] == ["image"]
    assert props(outputs[0])["artifactId"] == image_id
    image = compute.images.get(RG, "aib-win")
    assert props(image)["storageProfile"]["osDisk"]["osType"] == "Windows"
    assert props(image)["hyperVGeneration"] == "V2"
    imagebuilder.virtual_machine_image_templates.begin_delete(RG, "aib-outputs").result()
    compute.images.begin_delete(RG, "aib-win").result()
