// The worker's counters (Envoy-style names per stage), reported to the supervisor on request and
// summed there across workers.

export class ProxyStats {
  /** Connections handed to this worker by the kernel. */
  downstream_cx_total = 0;
  downstream_cx_active = 0;
  /** Connections closed because no redirect record names them. */
  downstream_cx_no_record = 0;
  /** TLS on a port with HTTP rules and no termination: refused. */
  downstream_cx_tls_denied = 0;
  downstream_cx_protocol_unknown = 0;
  downstream_cx_http1 = 0;
  downstream_cx_http2 = 0;
  downstream_rq_total = 0;
  downstream_rq_allowed = 0;
  downstream_rq_denied = 0;
  /** 4xx the proxy answered itself for malformed requests (parser refusals). */
  downstream_rq_refused = 0;
  downstream_rq_5xx_local = 0;
  downstream_rq_tunnel = 0;
  upstream_cx_total = 0;
  upstream_cx_active = 0;
  upstream_cx_connect_fail = 0;
  upstream_rq_retry = 0;
  upstream_rq_timeout = 0;
  config_snapshots = 0;
  flows_pushed = 0;

  toJSON(): Record<string, number> {
    return { ...this } as unknown as Record<string, number>;
  }
}
