#!/usr/bin/env node
// A state system revealing jeton tokens from Node.js: it loads jeton's
// committed .proto files at run time (no code generation), calls
// Detokenize on the trusted listener over mutual TLS with a stated purpose,
// and handles each token's result on its own.
//
//   node detokenize.js --purpose vetting [--case-ref REF] TOKEN...
//
// Connection settings come from flags or the same environment variables as
// the jeton CLI: --addr (JETON_ADDR), --cacert (JETON_CACERT), --cert
// (JETON_CERT), --key (JETON_KEY).
//
// Prints one line per token, in order: the value, or an empty line when
// that token failed (reported on stderr by position, never by value).
// Exit status: 0 all revealed, 1 some tokens failed, 2 usage error, 3 the
// call failed (e.g. no purpose, purpose not allowed, certificate refused).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');

function parseArgs(argv) {
  const opts = {
    addr: process.env.JETON_ADDR || '',
    cacert: process.env.JETON_CACERT || '',
    cert: process.env.JETON_CERT || '',
    key: process.env.JETON_KEY || '',
    purpose: '',
    caseRef: '',
    tokens: [],
  };
  const flags = { '--addr': 'addr', '--cacert': 'cacert', '--cert': 'cert', '--key': 'key', '--purpose': 'purpose', '--case-ref': 'caseRef' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      return { help: true };
    }
    if (flags[a]) {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      opts[flags[a]] = argv[++i];
    } else if (a.startsWith('--')) {
      throw new Error(`unknown flag ${a}`);
    } else {
      opts.tokens.push(a);
    }
  }
  for (const k of ['addr', 'cacert', 'cert', 'key']) {
    if (!opts[k]) throw new Error(`missing --${k} (or JETON_${k.toUpperCase()})`);
  }
  return opts;
}

function detokenizerClient(opts) {
  const def = protoLoader.loadSync('jeton/v1/detokenizer.proto', {
    includeDirs: [PROTO_ROOT],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const jeton = grpc.loadPackageDefinition(def).jeton.v1;
  const creds = grpc.credentials.createSsl(
    fs.readFileSync(opts.cacert),
    fs.readFileSync(opts.key),
    fs.readFileSync(opts.cert),
  );
  return new jeton.Detokenizer(opts.addr, creds);
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`detokenize.js: ${e.message}`);
    return process.exit(2);
  }
  if (opts.help) {
    console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 17).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
    return process.exit(0);
  }
  const client = detokenizerClient(opts);
  const deadline = new Date(Date.now() + 10000);
  // The purpose is sent as given: jetond refuses a call without one
  // (INVALID_ARGUMENT) or with one the identity may not use
  // (PERMISSION_DENIED), and audits the refusal.
  client.Detokenize({ tokens: opts.tokens, purpose: opts.purpose, caseRef: opts.caseRef }, { deadline }, (err, resp) => {
    client.close();
    if (err) {
      console.error(`detokenize.js: the call failed: ${grpc.status[err.code]}: ${err.details}`);
      return process.exit(3);
    }
    let failed = 0;
    resp.results.forEach((r, i) => {
      if (r.outcome === 'value') {
        process.stdout.write(`${r.value}\n`);
        return;
      }
      failed++;
      process.stdout.write('\n');
      const code = grpc.status[r.error.code] || String(r.error.code);
      console.error(`detokenize.js: token ${i + 1}: ${code}: ${r.error.message}`);
    });
    process.exit(failed > 0 ? 1 : 0);
  });
}

main();
