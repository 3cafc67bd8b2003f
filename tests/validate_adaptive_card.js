#!/usr/bin/env node
// Validates an Adaptive Card with the official `adaptivecards` parser (parse + validateProperties only;
// nothing is rendered, so no DOM is needed).
//
// Usage: node tests/validate_adaptive_card.js [FILE|-] [--target-version 1.4]
//   FILE holds either a bare AdaptiveCard or a Teams message envelope
//   ({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", ...}]}).
// Prints one JSON object {"errors": [...], "warnings": [...], "cards": n}; exit code 0 = valid,
// 1 = invalid card, 2 = bad usage or the library could not be loaded.
//
// The package's `lib/` build is extension-less ESM that Node cannot load, so we use its UMD bundle.
"use strict";

const fs = require("fs");
const path = require("path");

// Host-specific extensions the parser does not model but Teams reads (they are not mistakes).
const HOST_EXTENSION_KEYS = new Set(["msteams", "$schema"]);

function loadLibrary() {
  const candidates = [
    path.join(__dirname, "..", "node_modules", "adaptivecards", "dist", "adaptivecards.js"),
  ];
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) {
      return require(candidate);
    }
  }
  return require("adaptivecards/dist/adaptivecards.js");
}

function parseArgs(argv) {
  const args = { file: "-", target: "1.5" };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--target-version") {
      args.target = argv[++i];
    } else {
      args.file = argv[i];
    }
  }
  return args;
}

function cardsIn(doc, errors) {
  if (doc && doc.type === "AdaptiveCard") {
    return [doc];
  }
  if (doc && doc.type === "message") {
    if (!Array.isArray(doc.attachments) || doc.attachments.length === 0) {
      errors.push("message envelope has no attachments");
      return [];
    }
    return doc.attachments.flatMap((a, i) => {
      if (a.contentType !== "application/vnd.microsoft.card.adaptive") {
        errors.push(`attachments[${i}].contentType is ${JSON.stringify(a.contentType)}, not an Adaptive Card`);
        return [];
      }
      if (!a.content || typeof a.content !== "object") {
        errors.push(`attachments[${i}].content is missing`);
        return [];
      }
      return [a.content];
    });
  }
  errors.push('input is neither an AdaptiveCard nor a {"type": "message"} envelope');
  return [];
}

// Keys the parser silently ignored: typos like "wieght" render as nothing in Teams, so we report them.
function droppedKeys(input, roundTripped, where, out) {
  if (Array.isArray(input)) {
    // The parser drops elements it does not know (already reported by parse()), so pair items up in
    // order, skipping input items whose type has no counterpart at the current position.
    const others = Array.isArray(roundTripped) ? roundTripped : [];
    let j = 0;
    input.forEach((item, i) => {
      const typed = item !== null && typeof item === "object" && "type" in item;
      if (typed && (j >= others.length || !others[j] || others[j].type !== item.type)) {
        return;
      }
      droppedKeys(item, others[j], `${where}[${i}]`, out);
      j++;
    });
    return;
  }
  if (input === null || typeof input !== "object") {
    return;
  }
  for (const key of Object.keys(input)) {
    if (HOST_EXTENSION_KEYS.has(key)) {
      continue;
    }
    const present = roundTripped && typeof roundTripped === "object" && key in roundTripped;
    if (!present) {
      out.push(`${where}.${key} is not understood by the Adaptive Cards parser`);
      continue;
    }
    droppedKeys(input[key], roundTripped[key], `${where}.${key}`, out);
  }
}

function validateCard(AC, json, target, label, errors, warnings) {
  const version = AC.Version.parse(target, new AC.SerializationContext());
  const context = new AC.SerializationContext(version);
  const card = new AC.AdaptiveCard();
  card.parse(json, context);
  for (let i = 0; i < context.eventCount; i++) {
    const event = context.getEventAt(i);
    errors.push(`${label}: parse: ${AC.ValidationEvent[event.event] || event.event}: ${event.message}`);
  }
  const results = card.validateProperties();
  for (const event of results.validationEvents) {
    errors.push(`${label}: validate: ${AC.ValidationEvent[event.event] || event.event}: ${event.message}`);
  }
  const declared = AC.Version.parse(String(json.version || ""), new AC.SerializationContext());
  if (!declared || !declared.isValid) {
    errors.push(`${label}: "version" is missing or not a version number`);
  } else if (declared.major > version.major || (declared.major === version.major && declared.minor > version.minor)) {
    errors.push(`${label}: card version ${json.version} is above the target ${target}`);
  }
  const dropped = [];
  droppedKeys(json, card.toJSON(context), label, dropped);
  errors.push(...dropped);
  if (!Array.isArray(json.body) || json.body.length === 0) {
    warnings.push(`${label}: card has an empty body`);
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  let AC;
  try {
    AC = loadLibrary();
  } catch (err) {
    process.stdout.write(JSON.stringify({ errors: [`cannot load adaptivecards: ${err.message}`], warnings: [] }) + "\n");
    process.exit(2);
  }
  let doc;
  try {
    const text = fs.readFileSync(args.file === "-" ? 0 : args.file, "utf8");
    doc = JSON.parse(text);
  } catch (err) {
    process.stdout.write(JSON.stringify({ errors: [`cannot read card JSON: ${err.message}`], warnings: [] }) + "\n");
    process.exit(2);
  }
  const errors = [];
  const warnings = [];
  const cards = cardsIn(doc, errors);
  cards.forEach((card, i) => validateCard(AC, card, args.target, `card[${i}]`, errors, warnings));
  process.stdout.write(JSON.stringify({ errors, warnings, cards: cards.length }) + "\n");
  process.exit(errors.length === 0 ? 0 : 1);
}

main();
