// Kafka rules of a policy (role or apiKey, apiVersion, clientID, topic): validation and matching a
// request. Pure: no I/O.

import type { FieldProblem } from "./http-match.ts";

export interface KafkaRuleDoc {
  role?: string;
  apiKey?: string;
  apiVersion?: string;
  clientID?: string;
  topic?: string;
}

export interface KafkaRequest {
  apiKey: string | number;
  apiVersion?: number;
  clientID?: string;
  topic?: string;
}

export const KAFKA_API_KEYS: Record<string, number> = {
  produce: 0,
  fetch: 1,
  offsets: 2,
  metadata: 3,
  leaderandisr: 4,
  stopreplica: 5,
  updatemetadata: 6,
  controlledshutdown: 7,
  offsetcommit: 8,
  offsetfetch: 9,
  findcoordinator: 10,
  joingroup: 11,
  heartbeat: 12,
  leavegroup: 13,
  syncgroup: 14,
  describegroups: 15,
  listgroups: 16,
  saslhandshake: 17,
  apiversions: 18,
  createtopics: 19,
  deletetopics: 20,
  deleterecords: 21,
  initproducerid: 22,
  offsetforleaderepoch: 23,
  addpartitionstotxn: 24,
  addoffsetstotxn: 25,
  endtxn: 26,
  writetxnmarkers: 27,
  txnoffsetcommit: 28,
  describeacls: 29,
  createacls: 30,
  deleteacls: 31,
  describeconfigs: 32,
  alterconfigs: 33,
};

/** What a role lets a client do, as Cilium defines the roles. */
const ROLE_KEYS: Record<string, string[]> = {
  produce: ["produce", "metadata", "apiversions"],
  consume: [
    "fetch",
    "offsets",
    "metadata",
    "offsetcommit",
    "offsetfetch",
    "findcoordinator",
    "joingroup",
    "heartbeat",
    "leavegroup",
    "syncgroup",
    "apiversions",
  ],
};

/** Requests of these kinds name no topic, so a topic rule does not restrict them. */
const TOPICLESS = new Set([
  "apiversions",
  "saslhandshake",
  "findcoordinator",
  "joingroup",
  "heartbeat",
  "leavegroup",
  "syncgroup",
  "describegroups",
  "listgroups",
  "initproducerid",
]);

export function validateKafkaRule(rule: KafkaRuleDoc, at: string): FieldProblem[] {
  const out: FieldProblem[] = [];
  if (rule.role !== undefined && rule.apiKey !== undefined) out.push({ path: `${at}.role`, reason: "role and apiKey are mutually exclusive" });
  if (rule.role !== undefined && !(rule.role.toLowerCase() in ROLE_KEYS))
    out.push({ path: `${at}.role`, reason: `"${rule.role}" is not a Kafka role (produce, consume)` });
  if (rule.apiKey !== undefined && !(rule.apiKey.toLowerCase() in KAFKA_API_KEYS))
    out.push({ path: `${at}.apiKey`, reason: `"${rule.apiKey}" is not a Kafka API key name` });
  if (rule.apiVersion !== undefined && !/^\d{1,5}$/.test(rule.apiVersion))
    out.push({ path: `${at}.apiVersion`, reason: `"${rule.apiVersion}" is not a Kafka API version number` });
  if (rule.topic !== undefined && !/^[a-zA-Z0-9._-]{1,255}$/.test(rule.topic))
    out.push({ path: `${at}.topic`, reason: `"${rule.topic}" is not a valid Kafka topic name` });
  if (rule.clientID !== undefined && !/^[a-zA-Z0-9._-]{0,255}$/.test(rule.clientID))
    out.push({ path: `${at}.clientID`, reason: `"${rule.clientID}" is not a valid Kafka client ID` });
  return out;
}

function keyName(k: string | number): string | undefined {
  if (typeof k === "number") return Object.entries(KAFKA_API_KEYS).find(([, v]) => v === k)?.[0];
  return k.toLowerCase() in KAFKA_API_KEYS ? k.toLowerCase() : undefined;
}

export function matchKafka(rule: KafkaRuleDoc, req: KafkaRequest): boolean {
  const key = keyName(req.apiKey);
  if (key === undefined) return false;
  if (rule.apiKey !== undefined && rule.apiKey.toLowerCase() !== key) return false;
  if (rule.role !== undefined && !(ROLE_KEYS[rule.role.toLowerCase()] ?? []).includes(key)) return false;
  if (rule.apiVersion !== undefined && Number(rule.apiVersion) !== req.apiVersion) return false;
  if (rule.clientID !== undefined && rule.clientID !== req.clientID) return false;
  if (rule.topic !== undefined) {
    if (req.topic === undefined) return TOPICLESS.has(key);
    if (req.topic !== rule.topic) return false;
  }
  return true;
}
