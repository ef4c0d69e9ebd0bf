// Small constructors for OpenAPI v3 structural schemas (the dialect CRDs carry), so the policy
// schemas read as the documents they describe. Pure: no I/O.

export type Schema = Record<string, unknown>;

export const str = (extra: Schema = {}): Schema => ({ type: "string", ...extra });
export const int = (extra: Schema = {}): Schema => ({ type: "integer", ...extra });
export const bool = (extra: Schema = {}): Schema => ({ type: "boolean", ...extra });
export const arr = (items: Schema, extra: Schema = {}): Schema => ({ type: "array", items, ...extra });
export const obj = (properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: "object", properties, ...extra });
export const strMap = (extra: Schema = {}): Schema => ({ type: "object", additionalProperties: { type: "string" }, ...extra });
export const intOrString = (extra: Schema = {}): Schema => ({
  "x-kubernetes-int-or-string": true,
  anyOf: [{ type: "integer" }, { type: "string" }],
  ...extra,
});
