// The local cluster's object store: a directory of Kubernetes YAML objects, the stand-in for the API
// server. Only `weft up`/`apply`/`delete` write it (through `writeObjects`/`deleteObjects`); agents and
// kubelets only read it and poll its revision.

import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import YAML from "yaml";
import { defaultStateRoot } from "./config.ts";

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  creationTimestamp?: string;
  generation?: number;
  [key: string]: unknown;
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  specs?: unknown;
  [key: string]: unknown;
}

/** Kinds that live outside namespaces. */
export const CLUSTER_SCOPED = new Set(["Namespace", "Node", "CiliumClusterwideNetworkPolicy", "CiliumIdentity"]);

export function objectKey(o: Pick<K8sObject, "kind" | "metadata">): string {
  return CLUSTER_SCOPED.has(o.kind) ? `${o.kind}/${o.metadata.name}` : `${o.kind}/${o.metadata.namespace ?? "default"}/${o.metadata.name}`;
}

export function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** A parsed object file, kept while the file is the same one (every write renames a new file in). */
interface ParsedFile {
  ino: number;
  size: number;
  mtimeMs: number;
  object: K8sObject;
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/**
 * Lists come in key order — "namespace/name", compared as strings — as etcd and the Kubernetes API
 * list objects. Plain file-name order differs where a name continues with a character below "."
 * or "/" ("a-b.yaml" sorts before "a.yaml"); consumers that get the key order need not sort again
 * (the service datapath's from-empty sync checks for it and skips its sort).
 */
const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function namespaceDirs(kindDir: string): string[] {
  return readdirSync(kindDir).sort((a, b) => byText(`${a}/`, `${b}/`));
}

function objectFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort((a, b) => byText(a.slice(0, -5), b.slice(0, -5)));
}

export class Store {
  readonly dir: string;
  /** The cluster's name (the state folder's name). */
  readonly cluster: string;
  private readonly parsed = new Map<string, ParsedFile>();

  constructor(stateDir: string) {
    this.dir = join(stateDir, "objects");
    this.cluster = basename(stateDir);
  }

  private pathOf(o: Pick<K8sObject, "kind" | "metadata">): string {
    const ns = CLUSTER_SCOPED.has(o.kind) ? "_cluster" : (o.metadata.namespace ?? "default");
    return join(this.dir, o.kind, ns, `${o.metadata.name}.yaml`);
  }

  /** A number that grows on every write; readers poll it to notice changes cheaply. */
  revision(): number {
    try {
      return Number(readFileSync(join(this.dir, "REVISION"), "utf8")) || 0;
    } catch {
      return 0;
    }
  }

  list(kind: string): K8sObject[] {
    const kindDir = join(this.dir, kind);
    if (!existsSync(kindDir)) return [];
    const out: K8sObject[] = [];
    for (const ns of namespaceDirs(kindDir)) {
      for (const file of objectFiles(join(kindDir, ns))) {
        out.push(YAML.parse(readFileSync(join(kindDir, ns, file), "utf8")) as K8sObject);
      }
    }
    return out;
  }

  /**
   * list() for readers that poll (agents): a file whose inode, size and modification time are
   * those of the last call is not parsed again — one `weft apply` of a Service among 10k then costs
   * a stat per file instead of 10k YAML parses (~2.6 s). The objects are shared between calls and
   * deeply frozen: a caller that tries to change one gets a TypeError, never a changed cache.
   */
  listShared(kind: string): K8sObject[] {
    const kindDir = join(this.dir, kind);
    const out: K8sObject[] = [];
    const seen = new Set<string>();
    for (const ns of existsSync(kindDir) ? namespaceDirs(kindDir) : []) {
      for (const file of objectFiles(join(kindDir, ns))) {
        const path = join(kindDir, ns, file);
        const st = statSync(path, { throwIfNoEntry: false });
        if (!st) continue; // deleted since the directory was read
        seen.add(path);
        const hit = this.parsed.get(path);
        if (hit && hit.ino === st.ino && hit.size === st.size && hit.mtimeMs === st.mtimeMs) {
          out.push(hit.object);
          continue;
        }
        const object = deepFreeze(YAML.parse(readFileSync(path, "utf8")) as K8sObject);
        this.parsed.set(path, { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, object });
        out.push(object);
      }
    }
    for (const path of this.parsed.keys()) if (path.startsWith(`${kindDir}/`) && !seen.has(path)) this.parsed.delete(path);
    return out;
  }

  get(kind: string, namespace: string | undefined, name: string): K8sObject | undefined {
    const path = this.pathOf({ kind, metadata: { name, namespace } });
    return existsSync(path) ? (YAML.parse(readFileSync(path, "utf8")) as K8sObject) : undefined;
  }

  /** Writes objects (already validated) and bumps the revision once. */
  write(objects: K8sObject[]): void {
    for (const o of objects) {
      const path = this.pathOf(o);
      mkdirSync(join(path, ".."), { recursive: true });
      writeAtomic(path, YAML.stringify(o));
    }
    this.bump();
  }

  /** Removes objects; returns the keys that existed. */
  delete(objects: Pick<K8sObject, "kind" | "metadata">[]): string[] {
    const removed: string[] = [];
    for (const o of objects) {
      const path = this.pathOf(o);
      if (existsSync(path)) {
        rmSync(path);
        removed.push(objectKey(o));
      }
    }
    this.bump();
    return removed;
  }

  private bump(): void {
    mkdirSync(this.dir, { recursive: true });
    writeAtomic(join(this.dir, "REVISION"), String(this.revision() + 1));
  }
}

export function openStore(cluster: string, stateRoot = defaultStateRoot()): Store {
  return new Store(join(stateRoot, cluster));
}
