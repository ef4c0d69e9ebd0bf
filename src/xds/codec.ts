// Protobuf encoding of xDS messages: loads Envoy's v3 .proto files from node_modules
// (@grpc/grpc-js-xds ships them under deps/) and Weft's own L7 policy proto with @grpc/proto-loader,
// once, on first use; encodes resources into google.protobuf.Any and decodes them back into plain
// objects with proto field names. Never copy Envoy's protos into the tree.

import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ServiceDefinition } from "@grpc/grpc-js";
import { addCommonProtos, loadProtosWithOptionsSync } from "@grpc/proto-loader/build/src/util.js";
import type { Root, Type } from "protobufjs";
import { WeftError } from "../core/errors.ts";
import { type AnyResource, resourceName, type TypeUrl, type XdsResource } from "./resources.ts";

const PROTO_FILES = [
  "envoy/service/discovery/v3/ads.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
  "weft_l7policy.proto",
];

/** Plain objects keep proto field names; enums as names; 64-bit integers as numbers; Any unpacked with "@type". */
const TO_OBJECT = { enums: String, longs: Number, bytes: String, json: true } as const;

let root: Root | undefined;

/** The include directories: Envoy's API and its dependencies inside @grpc/grpc-js-xds, and src/xds/proto. */
export function protoIncludeDirs(): string[] {
  const require = createRequire(import.meta.url);
  const xds = dirname(require.resolve("@grpc/grpc-js-xds/package.json"));
  const deps = ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(xds, "deps", d));
  return [...deps, join(dirname(fileURLToPath(import.meta.url)), "proto")];
}

/** The protobufjs root holding every type Weft's xDS uses (loaded once, ~0.2 s). */
export function protoRoot(): Root {
  if (!root) {
    addCommonProtos();
    root = loadProtosWithOptionsSync(PROTO_FILES, { keepCase: true, includeDirs: protoIncludeDirs() });
  }
  return root;
}

export function messageType(fullName: string): Type {
  return protoRoot().lookupType(fullName);
}

const typeOfUrl = (typeUrl: string): Type => {
  const name = typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
  try {
    return messageType(name);
  } catch {
    throw new WeftError("WEFT_XDS", `unknown resource type ${typeUrl}`);
  }
};

/** Encodes a message given as a plain object (proto field names, nested Any as {"@type", ...}). */
export function encodeMessage(fullName: string, obj: object): Uint8Array {
  try {
    return encodeWith(messageType(fullName), obj);
  } catch (err) {
    throw new WeftError("WEFT_XDS", `${fullName} does not encode: ${(err as Error).message}`);
  }
}

export function decodeMessage<T = Record<string, unknown>>(fullName: string, bytes: Uint8Array): T {
  const t = messageType(fullName);
  return t.toObject(t.decode(bytes), TO_OBJECT) as T;
}

/** Encodes a resource into the Any the xDS wire carries. */
export function encodeAny(r: XdsResource): AnyResource {
  const t = typeOfUrl(r.typeUrl);
  try {
    return { type_url: r.typeUrl, value: encodeWith(t, r.message) };
  } catch (err) {
    throw new WeftError("WEFT_XDS", `does not encode: ${(err as Error).message}`, `${t.name} "${resourceName(r.typeUrl, r.message)}"`);
  }
}

function encodeWith(t: Type, obj: object): Uint8Array {
  const msg = t.fromObject(obj);
  const problem = t.verify(msg);
  if (problem) throw new Error(problem);
  return t.encode(msg).finish();
}

/** Decodes an Any into a plain object of its type; throws WEFT_XDS for an unknown type or bad bytes. */
export function decodeAny<T = Record<string, unknown>>(any: AnyResource): { typeUrl: string; message: T } {
  const t = typeOfUrl(any.type_url);
  try {
    return { typeUrl: any.type_url, message: t.toObject(t.decode(any.value), TO_OBJECT) as T };
  } catch (err) {
    throw new WeftError("WEFT_XDS", `undecodable ${t.name}: ${(err as Error).message}`);
  }
}

// --- the ADS wire: DiscoveryRequest / DiscoveryResponse ---

export interface Node {
  id: string;
  cluster?: string;
  user_agent_name?: string;
  [field: string]: unknown;
}

export interface DiscoveryRequest {
  version_info?: string;
  node?: Node;
  resource_names?: string[];
  type_url: TypeUrl | string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

export interface DiscoveryResponse {
  version_info: string;
  resources: AnyResource[];
  type_url: string;
  nonce: string;
}

const REQUEST = "envoy.service.discovery.v3.DiscoveryRequest";
const RESPONSE = "envoy.service.discovery.v3.DiscoveryResponse";

/** Decodes a request keeping Any-free plain fields (node metadata is decoded as a Struct object). */
export function decodeRequest(buf: Uint8Array): DiscoveryRequest {
  const t = messageType(REQUEST);
  return t.toObject(t.decode(buf), { enums: String, longs: Number, arrays: true }) as DiscoveryRequest;
}

export function encodeRequest(req: DiscoveryRequest): Buffer {
  const t = messageType(REQUEST);
  return Buffer.from(t.encode(t.fromObject(req)).finish());
}

/** Responses keep resources as raw Any (type_url + bytes): the client decodes each and may refuse it. */
export function decodeResponse(buf: Uint8Array): DiscoveryResponse {
  const t = messageType(RESPONSE);
  const o = t.toObject(t.decode(buf), { longs: Number, arrays: true }) as DiscoveryResponse;
  return { version_info: o.version_info ?? "", resources: o.resources ?? [], type_url: o.type_url ?? "", nonce: o.nonce ?? "" };
}

export function encodeResponse(res: DiscoveryResponse): Buffer {
  const t = messageType(RESPONSE);
  return Buffer.from(t.encode(t.fromObject(res)).finish());
}

export const ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

/** The gRPC service definition of ADS (state of the world), with our own (de)serializers. */
export function adsService(): ServiceDefinition {
  return {
    StreamAggregatedResources: {
      path: ADS_METHOD,
      requestStream: true,
      responseStream: true,
      requestSerialize: encodeRequest,
      requestDeserialize: (b: Buffer) => decodeRequest(b),
      responseSerialize: encodeResponse,
      responseDeserialize: (b: Buffer) => decodeResponse(b),
    },
  } as ServiceDefinition;
}
