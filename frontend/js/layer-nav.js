// Moving between layers and units, and saying what a layer is from its place among the model's modules.
// Pure: unit-tested under node.

/** The layers before and after `name` in `order` (names, in the model's order); null at either end. */
export function neighbourLayers(order, name) {
  const index = order.indexOf(name);
  if (index < 0) return { previous: null, next: null };
  return { previous: order[index - 1] ?? null, next: order[index + 1] ?? null };
}

/**
 * What a "go to unit" box holds: `476`, or `layer:476` for another layer's unit (as the API writes units).
 * { layer, unit } to go to, or { error } saying what to type. `layers` are the layers one may go to.
 */
export function parseUnitJump(text, { layer, total, layers = [layer] }) {
  const typed = String(text ?? "").trim();
  if (!typed) return { error: `Type a unit number from 0 to ${total - 1}.` };
  const match = /^(?:(.+):)?\s*#?(\d+)$/.exec(typed);
  if (!match) return { error: `"${typed}" is not a unit number: type one from 0 to ${total - 1}.` };
  const target = match[1]?.trim() || layer;
  const unit = Number(match[2]);
  if (target !== layer) {
    return layers.includes(target) ? { layer: target, unit } : { error: `No indexed layer "${target}" in this model.` };
  }
  if (unit >= total) return { error: `No unit ${unit}: ${layer} has units 0 to ${total - 1}.` };
  return { layer, unit };
}

/** The nearest listed module that holds `name` (`block3` for `block3.2`), or null. */
export function parentLayer(layers, name) {
  const parts = name.split(".");
  for (let depth = parts.length - 1; depth > 0; depth--) {
    const found = layers.find((l) => l.name === parts.slice(0, depth).join("."));
    if (found) return found;
  }
  return null;
}

const SIGNED = new Set(["Conv2d", "ConvTranspose2d", "BatchNorm2d", "GroupNorm", "LayerNorm", "InstanceNorm2d"]);
const ACTIVATIONS = new Set(["ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "GELU", "SiLU", "Hardswish", "Mish",
  "Sigmoid", "Hardsigmoid", "Tanh"]);

/**
 * Where layer `name` sits among `layers` (the model's, in order, each { name, type }), as parts to show:
 * strings, and { code } for layer names. `block3.2` of a Sequential `block3` is "in block3, after block3.1
 * (BatchNorm2d)"; `block3` is "the whole block: the same values as its last module, block3.5 (ReLU)".
 */
export function describeLayer(layers, name) {
  const layer = layers.find((l) => l.name === name);
  if (!layer) return [];
  const parts = [];
  const parent = parentLayer(layers, name);
  if (parent) {
    const siblings = layers.filter((l) => parentLayer(layers, l.name)?.name === parent.name);
    const before = siblings[siblings.indexOf(layer) - 1];
    parts.push("in ", { code: parent.name }, before ? ", after " : ", its first module");
    if (before) parts.push({ code: before.name }, ` (${before.type})`);
  }
  const children = layers.filter((l) => parentLayer(layers, l.name)?.name === name);
  if (children.length) {
    const lead = `${parent ? "; " : ""}the whole block's output`;
    // A Sequential's output is its last module's. Another block's is what its forward makes: a residual block's
    // last registered module is often its shortcut or a norm before the sum, so none is named.
    if (layer.type === "Sequential") {
      const last = children.at(-1);
      parts.push(`${lead}: the same values as its last module, `, { code: last.name }, ` (${last.type})`);
    } else {
      parts.push(`${lead}: what its forward returns (in a residual block, after the skip connection is added), not `
        + "any one of its modules' output");
    }
  }
  const kind = SIGNED.has(layer.type) ? "signed values, before the activation"
    : ACTIVATIONS.has(layer.type) ? "after the activation: what the next layer reads" : "";
  if (kind) parts.push(`${parts.length ? "; " : ""}${kind}`);
  return parts;
}

/**
 * The layers one can step through, in the model's order: those of the atlas of `dataset` (else the first
 * atlas), or the model's default selection when there is no atlas to ask.
 */
export function indexedOrder(modelLayers, atlases, dataset) {
  const atlas = atlases.find((a) => a.dataset === dataset) ?? atlases[0];
  const indexed = atlas ? new Set(atlas.layers) : null;
  return modelLayers.filter((l) => (indexed ? indexed.has(l.name) : l.default)).map((l) => l.name);
}

/** A module and the block that holds it, to explain the naming with: default layers if two are, else any. */
export function namingExample(layers) {
  const pairs = layers.map((l) => [l, parentLayer(layers, l.name)]).filter(([, parent]) => parent);
  const pair = pairs.find(([child, parent]) => child.default && parent.default) ?? pairs[0];
  return pair ? { child: pair[0], parent: pair[1] } : null;
}
