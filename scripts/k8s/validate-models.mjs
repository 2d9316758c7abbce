#!/usr/bin/env node
// (From the lethe team's shared test harness.)
// Offline schema check of Kubernetes manifests with the npm package kubernetes-models
// (JSON schemas bundled; no cluster, no network).
//   npm install --prefix DIR kubernetes-models@5.1.0 js-yaml@4
//   K8S_MODELS_NODE_MODULES=DIR/node_modules node validate-models.mjs FILE.yaml...
// kubernetes-models is ESM-only with an "exports" map, so modules are loaded by file URL.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const nm = process.env.K8S_MODELS_NODE_MODULES || path.resolve("node_modules");
const yaml = createRequire(path.join(nm, "noop.js"))("js-yaml");

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : [null, apiVersion];
  const file = path.join(nm, "kubernetes-models", ...(group ? [group] : []), version, "index.js");
  const mod = await import(pathToFileURL(file).href);
  if (!mod[kind]) throw new Error(`no model for ${apiVersion} ${kind}`);
  return mod[kind];
}

let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc) continue;
    const name = `${file}: ${doc.kind}/${doc.metadata && doc.metadata.name}`;
    try {
      const Model = await modelFor(doc.apiVersion, doc.kind);
      new Model(doc).validate();
      console.log(`ok   ${name}`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${String(e.message).split("\n").slice(0, 4).join(" | ")}`);
    }
  }
}
process.exit(failed ? 1 : 0);
