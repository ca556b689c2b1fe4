// Conformance with the official Azure SDK for JavaScript as an independent client of the local cloud:
// @azure/arm-resources, @azure/arm-compute, @azure/arm-imagebuilder, @azure/storage-blob and
// @azure/identity (ManagedIdentityCredential over IDENTITY_ENDPOINT/IDENTITY_HEADER), trusting the
// local CA through NODE_EXTRA_CA_CERTS, with the SDKs' own pollers and pagers.
//
// Run by `cargo test -p devcloud --test js_conformance`, which starts Azurite, the ARM simulator and the
// identity endpoint, makes a fixed VHD with qemu-img and sets: DEVCLOUD_ARM_ENDPOINT,
// AZURE_SUBSCRIPTION_ID, IDENTITY_ENDPOINT, IDENTITY_HEADER, NODE_EXTRA_CA_CERTS,
// AZURE_STORAGE_CONNECTION_STRING, DEVCLOUD_STORAGE_ACCOUNT_ID, DEVCLOUD_VHD_FILE.
import { test } from "node:test";
import assert from "node:assert/strict";
import { open } from "node:fs/promises";

import { ManagedIdentityCredential } from "@azure/identity";
import { ResourceManagementClient } from "@azure/arm-resources";
import { ComputeManagementClient } from "@azure/arm-compute";
import { ImageBuilderClient } from "@azure/arm-imagebuilder";
import { BlobServiceClient } from "@azure/storage-blob";
import { RestError } from "@azure/core-rest-pipeline";

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through cargo test -p devcloud --test js_conformance`);
  return value;
};

const ARM = need("DEVCLOUD_ARM_ENDPOINT");
const SUB = need("AZURE_SUBSCRIPTION_ID");
const STORAGE_ACCOUNT_ID = need("DEVCLOUD_STORAGE_ACCOUNT_ID");
const VHD_FILE = need("DEVCLOUD_VHD_FILE");
const RG = "rg-js-conformance";
const LOC = "westeurope";
// Pollers look again after the server's Retry-After; keep the client's own interval small too.
const POLL = { updateIntervalInMs: 50 };

const credential = new ManagedIdentityCredential();
// Tokens are for https://management.azure.com (the SDKs' default scope), as in Azure.
const options = { endpoint: ARM };
const resources = new ResourceManagementClient(credential, SUB, options);
const compute = new ComputeManagementClient(credential, SUB, options);
const imagebuilder = new ImageBuilderClient(credential, SUB, options);

/** Every item of a pager, page by page; returns [items, pageCount]. */
async function allPages(pager) {
  const items = [];
  let pages = 0;
  for await (const page of pager.byPage()) {
    pages += 1;
    items.push(...page);
  }
  return [items, pages];
}

/** Uploads a file as a page blob in 4 MiB Put Page ranges, skipping all-zero ranges. */
async function uploadPageBlob(container, name, path) {
  const blob = container.getPageBlobClient(name);
  const file = await open(path);
  try {
    const { size } = await file.stat();
    await blob.create(size);
    const chunk = Buffer.alloc(4 * 1024 * 1024);
    for (let offset = 0; offset < size; offset += chunk.length) {
      const n = Math.min(chunk.length, size - offset);
      await file.read(chunk, 0, n, offset);
      const part = chunk.subarray(0, n);
      if (part.some((b) => b !== 0)) await blob.uploadPages(part, offset, n);
    }
  } finally {
    await file.close();
  }
  return blob.url;
}

async function expectRestError(promise, status, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof RestError, `not a RestError: ${e}`);
    assert.equal(e.statusCode, status, e.message);
    if (code) assert.equal(e.code, code, e.message);
    return true;
  });
}

test("the JavaScript SDKs drive a full scenario", async () => {
  // 0. Blob storage through the Shared Key connection string (what Storage Explorer and az storage use).
  const blobs = BlobServiceClient.fromConnectionString(need("AZURE_STORAGE_CONNECTION_STRING"));
  const container = blobs.getContainerClient("vhds");
  await container.createIfNotExists();
  const vhd = await uploadPageBlob(container, "js/base.vhd", VHD_FILE);
  const props = await container.getBlobClient("js/base.vhd").getProperties();
  assert.equal(props.blobType, "PageBlob");

  // 1. A resource group; a PUT into a group that does not exist is refused as Azure refuses it.
  await expectRestError(
    compute.galleries.beginCreateOrUpdateAndWait("rg-js-missing", "nogallery", { location: LOC }, POLL),
    404,
    "ResourceGroupNotFound",
  );
  const group = await resources.resourceGroups.createOrUpdate(RG, { location: LOC, tags: { by: "js" } });
  assert.equal(group.name, RG);
  assert.equal(group.properties?.provisioningState, "Succeeded");
  assert.equal((await resources.resourceGroups.checkExistence(RG)).body, true);
  assert.equal((await resources.resourceGroups.checkExistence("rg-js-missing")).body, false);
  const [groups] = await allPages(resources.resourceGroups.list());
  assert.ok(groups.some((g) => g.name === RG), JSON.stringify(groups.map((g) => g.name)));

  // 2. A managed image from the VHD.
  const image = await compute.images.beginCreateOrUpdateAndWait(
    RG,
    "img-from-vhd",
    {
      location: LOC,
      hyperVGeneration: "V2",
      storageProfile: { osDisk: { osType: "Linux", osState: "Generalized", blobUri: vhd, storageAccountType: "Standard_LRS" } },
    },
    POLL,
  );
  assert.equal(image.provisioningState, "Succeeded");
  assert.equal(image.type, "Microsoft.Compute/images");

  // 3. Gallery and image definition.
  const gallery = await compute.galleries.beginCreateOrUpdateAndWait(RG, "js_gallery", { location: LOC, description: "js" }, POLL);
  assert.equal(gallery.provisioningState, "Succeeded");
  const definition = await compute.galleryImages.beginCreateOrUpdateAndWait(
    RG,
    "js_gallery",
    "ubuntu",
    {
      location: LOC,
      osType: "Linux",
      osState: "Generalized",
      hyperVGeneration: "V2",
      identifier: { publisher: "galleon", offer: "ubuntu", sku: "24_04-js" },
    },
    POLL,
  );
  assert.equal(definition.provisioningState, "Succeeded");

  // 4. A version straight from the VHD, replicated to three regions.
  const regions = [
    { name: LOC, regionalReplicaCount: 1 },
    { name: "northeurope", regionalReplicaCount: 2, storageAccountType: "Standard_ZRS" },
    { name: "eastus2", regionalReplicaCount: 1, storageAccountType: "Standard_LRS" },
  ];
  const version = await compute.galleryImageVersions.beginCreateOrUpdateAndWait(
    RG,
    "js_gallery",
    "ubuntu",
    "1.0.0",
    {
      location: LOC,
      publishingProfile: { targetRegions: regions },
      storageProfile: { osDiskImage: { source: { uri: vhd, storageAccountId: STORAGE_ACCOUNT_ID } } },
    },
    POLL,
  );
  assert.equal(version.provisioningState, "Succeeded");
  const status = await compute.galleryImageVersions.get(RG, "js_gallery", "ubuntu", "1.0.0", { expand: "ReplicationStatus" });
  assert.equal(status.replicationStatus?.aggregatedState, "Completed");
  assert.deepEqual(status.replicationStatus.summary.map((s) => s.region).sort(), [LOC, "northeurope", "eastus2"].sort());
  const replicated = Object.fromEntries(status.publishingProfile.targetRegions.map((r) => [r.name, r]));
  assert.equal(replicated.northeurope.regionalReplicaCount, 2);
  assert.equal(replicated.northeurope.storageAccountType, "Standard_ZRS");

  // 5. A PATCH of one field leaves the rest as it is (Azure merges).
  const patched = await compute.galleryImageVersions.beginUpdateAndWait(
    RG,
    "js_gallery",
    "ubuntu",
    "1.0.0",
    { publishingProfile: { excludeFromLatest: true } },
    POLL,
  );
  assert.equal(patched.publishingProfile.excludeFromLatest, true);
  assert.deepEqual(patched.publishingProfile.targetRegions.map((r) => r.name).sort(), [LOC, "northeurope", "eastus2"].sort());

  // 6. A version from the managed image, two regions.
  const fromImage = await compute.galleryImageVersions.beginCreateOrUpdateAndWait(
    RG,
    "js_gallery",
    "ubuntu",
    "1.0.1",
    {
      location: LOC,
      publishingProfile: { targetRegions: [{ name: LOC }, { name: "northeurope" }] },
      storageProfile: { source: { id: image.id } },
    },
    POLL,
  );
  assert.equal(fromImage.provisioningState, "Succeeded");

  // 7. Image Builder: a template distributing to the gallery, run with the SDK's poller.
  const template = await imagebuilder.virtualMachineImageTemplates.beginCreateOrUpdateAndWait(
    RG,
    "js-aib",
    {
      location: LOC,
      identity: {
        type: "UserAssigned",
        userAssignedIdentities: {
          [`/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib`]: {},
        },
      },
      source: { type: "PlatformImage", publisher: "Canonical", offer: "ubuntu-24_04-lts", sku: "server", version: "latest" },
      customize: [{ type: "Shell", name: "hello", inline: ["echo hello"] }],
      distribute: [
        { type: "SharedImage", galleryImageId: definition.id, runOutputName: "acg", targetRegions: [{ name: LOC, replicaCount: 1 }] },
      ],
      buildTimeoutInMinutes: 60,
    },
    POLL,
  );
  assert.equal(template.provisioningState, "Succeeded");
  await imagebuilder.virtualMachineImageTemplates.beginRunAndWait(RG, "js-aib", POLL);
  const ran = await imagebuilder.virtualMachineImageTemplates.get(RG, "js-aib");
  assert.equal(ran.lastRunStatus?.runState, "Succeeded", JSON.stringify(ran.lastRunStatus));
  // The platform image "latest" resolves to the version the build used.
  assert.match(ran.source.exactVersion ?? "", /^\d+\.\d+\.\d+$/, JSON.stringify(ran.source));
  const [outputs] = await allPages(imagebuilder.virtualMachineImageTemplates.listRunOutputs(RG, "js-aib"));
  assert.deepEqual(outputs.map((o) => o.name), ["acg"]);
  assert.match(outputs[0].artifactId ?? "", /\/galleries\/js_gallery\/images\/ubuntu\/versions\//i);
  // The run ended only once the version it distributed was made.
  const built = outputs[0].artifactId.split("/").pop();
  const distributed = await compute.galleryImageVersions.get(RG, "js_gallery", "ubuntu", built);
  assert.equal(distributed.provisioningState, "Succeeded");

  // 8. Lists, through the SDKs' pagers.
  const [versions, versionPages] = await allPages(compute.galleryImageVersions.listByGalleryImage(RG, "js_gallery", "ubuntu"));
  assert.equal(versions.length, 3, JSON.stringify(versions.map((v) => v.name)));
  assert.equal(versionPages, 2, "the local ARM pages at 2 items: the pager must follow nextLink");
  const [galleries] = await allPages(compute.galleries.listByResourceGroup(RG));
  assert.deepEqual(galleries.map((g) => g.name), ["js_gallery"]);
  const [images] = await allPages(compute.images.listByResourceGroup(RG));
  assert.deepEqual(images.map((i) => i.name), ["img-from-vhd"]);
  const [templates] = await allPages(imagebuilder.virtualMachineImageTemplates.listByResourceGroup(RG));
  assert.deepEqual(templates.map((t) => t.name), ["js-aib"]);

  // 9. Errors as the SDK surfaces them; a Compute type the local cloud does not simulate is absent (404).
  await expectRestError(compute.virtualMachines.get(RG, "novm"), 404);
  await expectRestError(compute.galleryImageVersions.get(RG, "js_gallery", "ubuntu", "9.9.9"), 404);
  await expectRestError(compute.galleryImages.beginDeleteAndWait(RG, "js_gallery", "ubuntu", POLL), 409);

  // 10. Deleting the group takes everything in it, through the SDK's poller.
  await resources.resourceGroups.beginDeleteAndWait(RG, POLL);
  await expectRestError(compute.galleries.get(RG, "js_gallery"), 404);
  await expectRestError(resources.resourceGroups.get(RG), 404, "ResourceGroupNotFound");
});
