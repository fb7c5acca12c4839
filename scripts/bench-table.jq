# scripts/bench-table.jq - bench.sh's table (markdown) from summary.json.
def commas: if length <= 3 then . else (.[:-3] | commas) + "," + .[-3:] end;
def n: if . == null then "n/a" elif type == "number" and . >= 1000 then (round | tostring | commas)
    else tostring end;
def x: if . == null then "n/a" else "\(.)x" end;
def result: if .pass then "**PASS**" else "**FAIL**" end;
"Baseline (same run): redis-benchmark XADD, \(.baseline.requests_per_s | n) requests/s, p50 \(.baseline.p50_ms) ms, p99 \(.baseline.p99_ms) ms, Redis \(.baseline.redis_us_per_xadd) us of CPU per XADD (runs: \(.baseline.runs | map(n) | join("; ")))",
"",
"| scenario | measured | throughput vs XADD/s | p99 vs XADD p99 | server CPU per unit vs Redis per XADD | target | result |",
"|---|---|---|---|---|---|---|",
(.scenarios[] |
  if .scenario == "ws-idle" then
    "| ws-idle | \(.kib_per_connection) KiB per idle connection (slope \(.kib_per_connection_slope)) | | | | \(.target) | \(result) |"
  elif .scenario == "redis-commands-per-api-mutation" then
    "| Redis commands per /api mutation | \(.commands_sent | n) sent (\(.seen.by_command // {} | to_entries | map("\(.key) \(.value)") | join(", "))); \(.commands_incl_scripts | n) counting those scripts ran (\(.seen_in_loop | to_entries | map("\(.key) \(.value)") | join(", "))) | | | | \(.target) | \(result) |"
  elif .scenario == "api-latency" then
    "| api-latency | \(.writes_per_s | n) writes/s to one server, \(.subscribers) subscribers on the other: write p50 \(.write_p50_ms) / p99 \(.write_p99_ms) ms, delivery p50 \(.delivery_p50_ms) / p99 \(.delivery_p99_ms) ms; lost \(.lost), duplicated \(.duplicates) | | write \(.write_p99_x | x), delivery \(.delivery_p99_x | x) | | \(.target) | \(result) |"
  elif .scenario == "ws-fanout" then
    "| ws-fanout | \(.per_s | n) deliveries/s, \(.deliveries_per_server_cpu_s | n) per server CPU-s; p50 \(.p50_ms) / p99 \(.p99_ms) ms; lost \(.lost), gaps \(.gaps) | \(.per_cpu_x | x) (per server CPU-s) | \(.p99_x | x) | \(.server_us_per_unit) us, \(.cpu_x | x) | \(.target) | \(result) |"
  elif .scenario == "history-analytics-cold" then
    "| history: first analytics answer | \(.ms) ms for \(.events | n) events (\(.per_s | n) events/s folded; \(.answer_bytes | n) bytes) | \(.throughput_x | x) | | \(.server_us_per_unit) us per event, \(.cpu_x | x) | \(.target) | \(result) |"
  elif .scenario == "history-analytics" or .scenario == "history-time-travel" then
    "| \(.scenario) | \(.per_s | n) answers/s; p50 \(.p50_ms) / p99 \(.p99_ms) ms (\(.events | n)-event board) | | \(.p99_x | x) | \(.server_us_per_unit) us, \(.cpu_x | x) | \(.target) | \(result) |"
  elif .scenario == "projector-trickle" then
    "| projector-trickle | \(.events | n) events written at \(.rate)/s, archived as they came: \(.us_per_event) us of projector + PostgreSQL CPU per event (catch-up: \(.catch_up_us_per_event) us) | | | \(.ratio | x) the catch-up's | \(.target) | \(result) |"
  elif .scenario == "projector" then
    "| projector | \(.per_s | n) events/s (\(.events | n) events in \(.seconds) s; CPU s projector \(.cpu_s.projector), PostgreSQL \(.cpu_s.postgres), Redis \(.cpu_s.redis)) | \(.throughput_x | x) | | \(.server_us_per_unit) us (projector), \(.cpu_x | x) | \(.target) | \(result) |"
  else
    "| \(.scenario) | \(.per_s | n)/s; p50 \(.p50_ms) / p99 \(.p99_ms) ms; errors \(.errors); cores server \(.cpu_cores.server) / loadgen \(.cpu_cores.loadgen) / other \(.cpu_cores.other)\(if .versions then "; versions exact: \(.versions | map(.exact) | all)" else "" end)\(if .stream_entries_exact != null then "; stream entries exact: \(.stream_entries_exact)" else "" end) | \(.throughput_x | x) | \(.p99_x | x) | \(.server_us_per_unit) us, \(.cpu_x | x) | \(.target) | \(result) |"
  end),
"",
"Medians of \(.scenarios | map(.runs) | max // 0) runs per scenario. \(.env | split("\n") | map(select(test("^(date|git|cpu|loadavg)"))) | join("; "))"
, (if .scale == null then empty else
  "",
  "Scale-out, one Redis against a 3-master Redis Cluster (one run each):",
  "",
  "| work | Redis | measured | vs XADD |",
  "|---|---|---|---|",
  (.scale.idle[] | . as $i | .steps[] |
    "| idle: \($i.instances) instances each watching \(.boards | n) boards (\(.connections) WebSockets in all; the instances' joins ended \(.joined_after_s) s after the last subscription) | \($i.redis) (\($i.redis_nodes) node\(if $i.redis_nodes > 1 then "s" else "" end)) | \(.commands_per_s) commands/s, Redis CPU \(.redis_cpu_s_per_s) s/s (\(.by_command_per_s | to_entries | map("\(.key) \(.value)") | join(", "))) | |"),
  (.scale.writes[] |
    "| api-mutations | \(.redis) | \(.per_s | n)/s, p99 \(.p99_ms) ms; \(.commands_sent) command(s) sent per mutation; stream entries exact: \(.stream_entries_exact) | \(.throughput_x | x), p99 \(.p99_x | x) |"),
  (.scale.fanout[] |
    "| ws-fanout through /api | \(.redis) | \(.deliveries_per_s | n) deliveries/s, \(.deliveries_per_server_cpu_s | n) per server CPU-s; p99 \(.p99_ms) ms; lost \(.lost), gaps \(.gaps) | \(.per_cpu_x | x) per server CPU-s |"),
  "",
  "Idle Redis work flat in the boards watched (largest step within 20% of the smallest): \(if .scale.idle_flat then "**PASS**" else "**FAIL**" end)"
end)
, (if .replicas == null then empty else
  "",
  "Replica acknowledgements: /api writes on a 3-master Redis Cluster with a replica each:",
  "",
  "| redis.replica_acks | measured | vs XADD | Redis commands sent per mutation |",
  "|---|---|---|---|",
  (.replicas.rows[] |
    "| \(.replica_acks) | \(.per_s | n)/s; p50 \(.p50_ms) / p99 \(.p99_ms) ms; errors \(.errors); stream entries exact: \(.stream_entries_exact) | \(.throughput_x | x), p99 \(.p99_x | x) | \(.commands_sent) (\(.by_command | to_entries | map("\(.key) \(.value)") | join(", "))) |"),
  "",
  "Throughput with replica_acks=1 against 0: \(.replicas.cost | x)"
end)
