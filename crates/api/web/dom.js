// Finding and making elements. Text always goes in as text, never as HTML.

export const $ = (id) => document.getElementById(id);

/** A new element: `text` sets its text, `class` its class, anything else an attribute. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'text') node.textContent = value;
    else if (name === 'class') node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}
