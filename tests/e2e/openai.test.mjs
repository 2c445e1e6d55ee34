// End-to-end: the official `openai` npm client against real `sluice serve`
// processes on loopback (echo backend, and sluice -> sluice mock-upstream).
// Run by CTest as `node --test tests/e2e/` with SLUICE_BIN set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import OpenAI from 'openai';

const BIN = process.env.SLUICE_BIN || new URL('../../build/sluice', import.meta.url).pathname;
const procs = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitListening(port, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); r(true); });
      c.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on ${port}`);
}

async function start(args) {
  const port = await freePort();
  const p = spawn(BIN, [...args, '--port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  p.on('exit', (code) => { if (code) console.error(`${args[0]} exited ${code}: ${err}`); });
  procs.push(p);
  await waitListening(port);
  return port;
}

const client = (port, extra = {}) =>
  new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'test-key', maxRetries: 0, ...extra });

let echoPort, shedPort, chainPort, mockPort, faultPort;

before(async () => {
  echoPort = await start(['serve', '--shards', '2', '--no-pin']);
  shedPort = await start(['serve', '--shards', '1', '--no-pin', '--shed', '--queue', '1',
    '--concurrency', '1', '--echo-delay-ms', '300']);
  mockPort = await start(['mock-upstream', '--threads', '1', '--tokens', '5']);
  chainPort = await start(['serve', '--shards', '2', '--no-pin',
    '--upstream', `http://127.0.0.1:${mockPort}/v1`, '--model', 'mock-chat']);
  const failing = await start(['mock-upstream', '--threads', '1', '--fault', 'http429']);
  faultPort = await start(['serve', '--shards', '1', '--no-pin',
    '--upstream', `http://127.0.0.1:${failing}/v1`, '--model', 'mock-chat']);
});

after(async () => {
  // Every process drains and exits 0 on SIGTERM (under ASan a leak makes
  // the exit code non-zero, so this also checks for leaks).
  const codes = await Promise.all(procs.map((p) => new Promise((resolve) => {
    if (p.exitCode !== null) return resolve(p.exitCode);
    p.on('exit', (code, sig) => resolve(code ?? sig));
    p.kill('SIGTERM');
  })));
  assert.deepEqual(codes, procs.map(() => 0));
});

test('chat completion through the five stages (echo)', async () => {
  const r = await client(echoPort).chat.completions.create({
    model: 'echo',
    messages: [{ role: 'user', content: 'What is   the capital of France?' }],
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, 'What is the capital of France?');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.usage.completion_tokens, 6);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('streamed chat completion with usage', async () => {
  const stream = await client(echoPort).chat.completions.create({
    model: 'echo',
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: 'one two three four' }],
  });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    assert.equal(c.object, 'chat.completion.chunk');
    if (c.choices.length) {
      text += c.choices[0].delta.content ?? '';
      if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
    }
    if (c.usage) usage = c.usage;
  }
  assert.equal(text, 'one two three four');
  assert.equal(finish, 'stop');
  assert.ok(chunks >= 6, `chunks ${chunks}`);
  assert.equal(usage.completion_tokens, 4);
});

test('legacy completions endpoint', async () => {
  const r = await client(echoPort).completions.create({ model: 'echo', prompt: 'hello  again' });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, 'hello again');
});

test('request id round-trip', async () => {
  const { data, response } = await client(echoPort).chat.completions
    .create({ model: 'echo', messages: [{ role: 'user', content: 'id please' }] },
      { headers: { 'X-Request-Id': 'e2e-req-42' } })
    .withResponse();
  assert.equal(response.headers.get('x-request-id'), 'e2e-req-42');
  assert.equal(data._request_id ?? response.headers.get('x-request-id'), 'e2e-req-42');
  assert.match(data.id, /e2e-req-42/);
});

test('unknown model is a 404 model_not_found', async () => {
  await assert.rejects(
    client(echoPort).chat.completions.create({ model: 'gpt-nope', messages: [{ role: 'user', content: 'x' }] }),
    (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
});

test('bad request surfaces as a 400 with an OpenAI error', async () => {
  await assert.rejects(
    client(echoPort).chat.completions.create({ model: 'echo', messages: [] }),
    (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.type, 'invalid_request_error');
      return true;
    });
});

test('overload under shed surfaces as 503 to the client', async () => {
  const c = client(shedPort);
  const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) =>
    c.chat.completions.create({
      model: 'echo',
      messages: [{ role: 'user', content: `burst ${i}` }],
    }, { headers: { 'X-Session-Id': 'one-session' } })));
  const ok = results.filter((r) => r.status === 'fulfilled');
  const shed = results.filter((r) => r.status === 'rejected');
  assert.ok(ok.length >= 1, 'some requests complete');
  assert.ok(shed.length >= 1, 'some requests are shed');
  for (const r of shed) {
    assert.equal(r.reason.status, 503);
    assert.ok(r.reason.headers.get('retry-after'), 'Retry-After is set');
  }
});

test('full chain: client -> sluice -> mock upstream, plain and streamed', async () => {
  const c = client(chainPort);
  const r = await c.chat.completions.create({
    model: 'mock-chat',
    messages: [{ role: 'user', content: 'say five words' }],
  });
  assert.equal(r.choices[0].message.content, 'w0 w1 w2 w3 w4');
  const stream = await c.chat.completions.create({
    model: 'mock-chat',
    stream: true,
    messages: [{ role: 'user', content: 'stream five words' }],
  });
  let text = '';
  for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? '';
  assert.equal(text, 'w0 w1 w2 w3 w4');
});

test('full chain: upstream failure reaches the client with its status', async () => {
  const c = client(faultPort);
  await assert.rejects(
    c.chat.completions.create({ model: 'mock-chat', messages: [{ role: 'user', content: 'x' }] }),
    (e) => {
      assert.equal(e.status, 429);
      return true;
    });
});
