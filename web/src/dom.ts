// A small helper to build elements: h("button", {type: "button", onclick}, "Route").
// Text is always set as text, never parsed as HTML, so nothing the server
// sends can become markup.

type Attrs = Record<string, string | number | boolean | EventListener | undefined | null>;
type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === "function") {
      el.addEventListener(name.replace(/^on/, ""), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// announce tells screen readers about a change that has no focus of its own.
export function announce(message: string): void {
  const region = document.getElementById("announce");
  if (!region) return;
  region.textContent = "";
  // A change after a tick is read out even when the words repeat.
  setTimeout(() => (region.textContent = message), 50);
}

// replace swaps the children of a container.
export function replace(container: Element, ...children: (Child | Child[])[]): void {
  container.replaceChildren();
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    container.append(c instanceof Node ? c : String(c));
  }
}
