# scripts/bench-summary.jq - bench.sh's summary.json from the runs' JSON lines.
# Inputs (--slurpfile): $xadd $quick $fanout $idle $api $latency $hot $projector $history, each
# a list of runs, and $scale (the scale-out runs, each tagged with its
# `redis`: single or cluster), $replicas (/api writes on a cluster with a replica
# per master, each tagged with its `replica_acks`); --rawfile env. Every figure is the median over the runs;
# every target a ratio to the same-run XADD baseline, or a count.
def median: map(select(. != null)) | sort
    | if length == 0 then null else .[(length - 1) / 2 | floor] end;
def med(f): map(f) | median;
def r2: if . == null then null else (. * 100 | round) / 100 end;
def div($a; $b): if $a == null or $b == null or $b == 0 then null else $a / $b end;
def at_least($x; $t): $x != null and $x >= $t;
def at_most($x; $t): $x != null and $x <= $t;

($xadd | {
    requests_per_s: med(.rps),
    p50_ms: med(.p50_ms),
    p99_ms: med(.p99_ms),
    redis_us_per_xadd: (med(.redis_cpu_s / .requests * 1e6) | r2),
    runs: map(.rps)
}) as $base
# One scenario's row: throughput and p99 against the baseline's, and the
# server's CPU per unit of work against Redis's per XADD.
| def row($name; $runs; $unit; $per_s; $p99; $cpu_us):
    { scenario: $name, runs: ($runs | length), unit: $unit,
      per_s: $per_s, p99_ms: $p99,
      throughput_x: (div($per_s; $base.requests_per_s) | r2),
      p99_x: (div($p99; $base.p99_ms) | r2),
      server_us_per_unit: ($cpu_us | r2),
      cpu_x: (div($cpu_us; $base.redis_us_per_xadd) | r2) };
def loop_row($name; $runs):
    row($name; $runs; "mutation"; ($runs | med(.mutations_per_s)); ($runs | med(.latency.p99_ms));
        ($runs | med(div(.cpu.server_cores; .mutations_per_s) | if . == null then null else . * 1e6 end)))
    + { p50_ms: ($runs | med(.latency.p50_ms)),
        errors: ($runs | med(.errors + .non_200)),
        cpu_cores: { server: ($runs | med(.cpu.server_cores)), loadgen: ($runs | med(.cpu.loadgen_cores)),
                     other: ($runs | med(.cpu.other_cores)) },
        per_run: ($runs | map({per_s: .mutations_per_s, p99_ms: .latency.p99_ms})) };

{
  env: $env,
  baseline: $base,
  scenarios: [
    ( $quick | select(length > 0) | loop_row("quick-mutations"; .)
      | . + { target: ">= 0.75x XADD/s, p99 <= 3x XADD p99, no errors",
              pass: (at_least(.throughput_x; 0.75) and at_most(.p99_x; 3) and .errors == 0) } ),
    ( $api | select(length > 0) | . as $runs | loop_row("api-mutations"; .)
      | . + { target: ">= 0.30x XADD/s, p99 <= 5x XADD p99, no errors",
              stream_entries_exact: ($runs | all(.events_check.consistent == true)),
              pass: (at_least(.throughput_x; 0.30) and at_most(.p99_x; 5) and .errors == 0
                     and ($runs | all(.events_check.consistent == true))) } ),
    ( $api | select(length > 0) | . as $runs
      | { scenario: "redis-commands-per-api-mutation", runs: length, unit: "command",
          commands_sent: med(.redis_commands_sent.total),
          commands_incl_scripts: med(.redis_commands.total),
          seen: (.[0].redis_commands_sent // {}),
          seen_in_loop: (.[0].redis_commands.by_command // {}),
          target: "= 1 command sent per mutation",
          pass: at_most($runs | med(.redis_commands_sent.total); 1.0) } ),
    # /api at a quarter of its measured rate: a write's p99 and its
    # delivery's to subscribers on another instance, against XADD's p99.
    ( $latency | select(length > 0) | . as $runs
      | { scenario: "api-latency", runs: length, unit: "write",
          writes_per_s: med(.params.writes_per_s), subscribers: med(.subscribed),
          write_p50_ms: med(.writer_latency.p50_ms), write_p99_ms: med(.writer_latency.p99_ms),
          delivery_p50_ms: med(.latency.p50_ms), delivery_p99_ms: med(.latency.p99_ms),
          lost: med(.lost), duplicates: med(.duplicates) }
      | . + { write_p99_x: (div(.write_p99_ms; $base.p99_ms) | r2),
              delivery_p99_x: (div(.delivery_p99_ms; $base.p99_ms) | r2),
              target: "at a quarter of api's rate: write and cross-instance delivery p99 <= 5x XADD p99, none lost" }
      | . + { pass: (at_most(.write_p99_x; 5) and at_most(.delivery_p99_x; 5) and .lost == 0 and .duplicates == 0) } ),
    ( $hot | select(length > 0) | . as $runs | loop_row("hot-board"; .)
      | . + { target: ">= 0.10x XADD/s, 0 lost or doubled versions",
              versions: ($runs | map(.versions_check)),
              pass: (at_least(.throughput_x; 0.10)
                     and ($runs | all(.versions_check.exact == true))) } ),
    ( $fanout | select(length > 0) | . as $runs
      | row("ws-fanout"; .; "delivery"; med(.deliveries_per_s); med(.latency.p99_ms);
            med(div(.cpu.server_cores; .deliveries_per_s) | if . == null then null else . * 1e6 end))
      | (($runs | med(div(.deliveries_per_s; .cpu.server_cores))) | if . == null then null else round end) as $per_cpu
      | . + { deliveries_per_server_cpu_s: $per_cpu,
              per_cpu_x: (div($per_cpu; $base.requests_per_s) | r2),
              p50_ms: ($runs | med(.latency.p50_ms)),
              lost: ($runs | med(.lost)), gaps: ($runs | med(.gaps)),
              cpu_cores: { server: ($runs | med(.cpu.server_cores)), loadgen: ($runs | med(.cpu.loadgen_cores)),
                           other: ($runs | med(.cpu.other_cores)) },
              target: ">= 2x XADD/s deliveries per server CPU-second, p99 <= 10x XADD p99" }
      | . + { pass: (at_least(.per_cpu_x; 2) and at_most(.p99_x; 10)) } ),
    ( $idle | select(length > 0)
      | { scenario: "ws-idle", runs: length, unit: "connection",
          kib_per_connection: med(.kib_per_connection),
          kib_per_connection_slope: med(.kib_per_connection_slope),
          target: "<= 4 KiB per idle connection" }
      | . + { pass: at_most(.kib_per_connection; 4) } ),
    ( $projector | select(length > 0) | . as $runs
      | row("projector"; .; "event"; med(.events_per_s); null; med(.cpu_s.projector / .events * 1e6))
      | . + { events: ($runs | med(.events)), seconds: ($runs | med(.seconds)),
              cpu_s: { projector: ($runs | med(.cpu_s.projector)), postgres: ($runs | med(.cpu_s.postgres)),
                       redis: ($runs | med(.cpu_s.redis)) },
              target: ">= 0.75x XADD/s events folded into PostgreSQL" }
      | . + { pass: at_least(.throughput_x; 0.75) } ),
    # The same projector archiving a trickle of writes as they come: its and
    # PostgreSQL's CPU per event against the catch-up's.
    ( $projector | map(select(.trickle != null)) | select(length > 0) | . as $runs
      | { scenario: "projector-trickle", runs: length, unit: "event",
          rate: med(.trickle.rate), events: med(.trickle.events),
          us_per_event: (med(.trickle.us_per_event) | r2),
          catch_up_us_per_event: (med(.catch_up_us_per_event) | r2) }
      | . + { ratio: (div(.us_per_event; .catch_up_us_per_event) | r2),
              target: "projector + PostgreSQL CPU per event <= 3x the catch-up's" }
      | . + { pass: at_most(.ratio; 3) } ),
    # One board's long history: the first analytics answer folds all of it
    # (events/s against XADD/s); later answers and time travel are bounded
    # in latency (p99 against XADD p99) and in server CPU per answer
    # (against Redis's CPU per XADD).
    ( $history | select(length > 0) | . as $runs
      | row("history-analytics-cold"; .; "event"; med(.cold.events_per_s); null;
            med(.cold.server_cpu_ms * 1000 / .events))
      | . + { events: ($runs | med(.events)), ms: ($runs | med(.cold.ms)),
              answer_bytes: ($runs | med(.cold.answer_bytes)),
              target: ">= 1.0x XADD/s events folded by the first analytics answer" }
      | . + { pass: at_least(.throughput_x; 1.0) } ),
    ( $history | select(length > 0) | . as $runs
      | row("history-analytics"; .; "answer"; med(.analytics.answers_per_s); med(.analytics.latency.p99_ms);
            med(.analytics.server_cpu_ms_per_answer * 1000))
      | . + { events: ($runs | med(.events)), p50_ms: ($runs | med(.analytics.latency.p50_ms)),
              target: "p99 <= 50x XADD p99, server CPU per answer <= 2000x Redis per XADD" }
      | . + { pass: (at_most(.p99_x; 50) and at_most(.cpu_x; 2000)) } ),
    ( $history | select(length > 0) | . as $runs
      | row("history-time-travel"; .; "answer"; med(.time_travel.answers_per_s); med(.time_travel.latency.p99_ms);
            med(.time_travel.server_cpu_ms_per_answer * 1000))
      | . + { events: ($runs | med(.events)), p50_ms: ($runs | med(.time_travel.latency.p50_ms)),
              target: "p99 <= 100x XADD p99, server CPU per answer <= 4000x Redis per XADD" }
      | . + { pass: (at_most(.p99_x; 100) and at_most(.cpu_x; 4000)) } )
  ],
  # Scale-out: the same work on one Redis and on a 3-master cluster.
  scale: ($scale | if length == 0 then null else {
    idle: [ .[] | select(.scenario == "scale-idle")
            | { redis, instances, redis_nodes,
                steps: [ .steps[] | { boards, connections, joined_after_s, commands_per_s,
                                      redis_cpu_s_per_s: (.redis_cpu_s_per_s * 10000 | round / 10000),
                                      by_command_per_s } ] }
            | . + { growth: div(.steps[-1].commands_per_s; .steps[0].commands_per_s) | r2 } ],
    writes: [ .[] | select(.scenario == "api-mutations")
              | { redis, per_s: .mutations_per_s, p99_ms: .latency.p99_ms,
                  throughput_x: (div(.mutations_per_s; $base.requests_per_s) | r2),
                  p99_x: (div(.latency.p99_ms; $base.p99_ms) | r2),
                  commands_sent: .redis_commands_sent.total,
                  commands_incl_scripts: .redis_commands.total,
                  stream_entries_exact: .events_check.consistent } ],
    fanout: [ .[] | select(.scenario == "ws-fanout")
              | { redis, deliveries_per_s, p99_ms: .latency.p99_ms, lost, gaps,
                  deliveries_per_server_cpu_s: (div(.deliveries_per_s; .cpu.server_cores) | if . == null then null else round end) }
              | . + { per_cpu_x: (div(.deliveries_per_server_cpu_s; $base.requests_per_s) | r2) } ],
  } | . + {
    # Idle work flat in the boards watched: the largest step within 20% (and
    # 1 command/s) of the smallest, on every Redis.
    idle_flat: (.idle | length > 0 and all(.steps[-1].commands_per_s <= .steps[0].commands_per_s * 1.2 + 1))
  } end),
  # What redis.replica_acks=1 costs /api writes, beside 0, on the same cluster.
  replicas: ($replicas | if length == 0 then null else
    [ group_by(.replica_acks)[] | . as $runs
      | { replica_acks: .[0].replica_acks, runs: length,
          per_s: med(.mutations_per_s), p50_ms: med(.latency.p50_ms), p99_ms: med(.latency.p99_ms),
          errors: med(.errors + .non_200),
          commands_sent: med(.redis_commands_sent.total),
          by_command: (.[0].redis_commands_sent.by_command // {}),
          stream_entries_exact: ($runs | all(.events_check.consistent == true)) }
      | . + { throughput_x: (div(.per_s; $base.requests_per_s) | r2),
              p99_x: (div(.p99_ms; $base.p99_ms) | r2) } ]
    | . as $rows
    | { rows: $rows,
        cost: (div(($rows | map(select(.replica_acks > 0)) | .[0].per_s); ($rows | map(select(.replica_acks == 0)) | .[0].per_s)) | r2) }
  end)
}
