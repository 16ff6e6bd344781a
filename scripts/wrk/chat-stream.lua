-- wrk script: small streaming chat completion (SSE over chunked encoding).
-- usage: wrk -t1 -c32 -d5s -s scripts/wrk/chat-stream.lua http://127.0.0.1:18000/v1/chat/completions
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":32,"stream":true}'
-- Weir with consumers needs a key (scripts/bench-proxy.sh sets WRK_AUTH); others ignore it.
local auth = os.getenv("WRK_AUTH")
if auth then wrk.headers["Authorization"] = auth end
