# The peer benchmark's side-by-side table (scripts/bench.sh peers): one row
# per offered load and stack, each cell the runs' values separated by " / ".
# Input: the peers.jsonl lines, slurped (jq -s).
def runs(f): map(f | tostring) | join(" / ");
def ms(f): runs(f // "-");
"## Peers: Socket.IO 4.8 and Streamboard, the same fan-out load",
"",
"| offered deliveries/s (subscribers) | stack | achieved deliveries/s | p50 ms | p99 ms | max ms | lost / dup | server CPU us/delivery | backend CPU us/delivery | RSS KiB/conn | Redis commands/write | load avg (1 min) |",
"|---|---|---|---|---|---|---|---|---|---|---|---|",
(group_by([.offered_deliveries_per_s, .target])
 | sort_by(.[0].offered_deliveries_per_s, (.[0].target != "socketio"))
 | .[]
 | sort_by(.run)
 | "| \(.[0].offered_deliveries_per_s) (\(.[0].params.subscribers)) | \(.[0].target) "
   + "| \(runs(.deliveries_per_s)) | \(ms(.latency.p50_ms)) | \(ms(.latency.p99_ms)) | \(ms(.latency.max_ms)) "
   + "| \(runs("\(.lost)/\(.duplicates)")) | \(runs(.server_cpu_us_per_delivery)) "
   + "| \(runs(.backend_cpu_us_per_delivery)) | \(runs(.rss_per_connection_kib)) "
   + "| \(runs(.redis_commands_per_write.total // "-")) "
   + "| \(runs(.load_average | split(" ")[0])) |")
