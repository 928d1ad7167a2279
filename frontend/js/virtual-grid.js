// A grid of thousands of equal cells that keeps only the rows near the viewport in the document: cells
// leaving the window are re-bound to the items entering it. A layer of 2,048 units thus holds about a
// hundred canvases, and scrolling draws a row at a time instead of rasterising pages of new canvases.

const OVERSCAN_ROWS = 2;

/**
 * Lay `total` items out in `container` (an element styled with a `gap` and a `--cell-min` width).
 * `create()` makes an empty cell element; `bind(cell, index)` shows item `index` in it. Stops when
 * `signal` aborts.
 */
export function virtualGrid(container, { total, create, bind, signal }) {
  const bound = new Map(); // item index -> cell
  const spare = [];
  let layout = null;
  let scheduled = false;

  const measure = () => {
    const style = getComputedStyle(container);
    const gap = parseFloat(style.columnGap) || 0;
    const width = container.clientWidth;
    const columns = Math.max(1, Math.floor((width + gap) / (parseFloat(style.getPropertyValue("--cell-min")) + gap)));
    const cellWidth = (width - gap * (columns - 1)) / columns;
    const probe = spare.pop() || create();
    probe.style.width = `${cellWidth}px`;
    container.append(probe);
    const cellHeight = probe.offsetHeight;
    probe.remove();
    spare.push(probe);
    const rows = Math.ceil(total / columns);
    container.style.height = `${Math.max(0, rows * (cellHeight + gap) - gap)}px`;
    return { width, columns, cellWidth, stepX: cellWidth + gap, stepY: cellHeight + gap };
  };

  const update = () => {
    scheduled = false;
    if (signal.aborted) return;
    const { columns, cellWidth, stepX, stepY } = layout;
    const top = container.getBoundingClientRect().top;
    const firstRow = Math.max(0, Math.floor(-top / stepY) - OVERSCAN_ROWS);
    const lastRow = Math.floor((window.innerHeight - top) / stepY) + OVERSCAN_ROWS;
    const first = firstRow * columns;
    const end = Math.min(total, (lastRow + 1) * columns);
    for (const [index, cell] of bound) {
      if (index < first || index >= end) {
        bound.delete(index);
        cell.remove();
        spare.push(cell);
      }
    }
    // Cells above those kept go first, so the document (and the tab order) follows the grid's order.
    const kept = bound.size ? Math.min(...bound.keys()) : Infinity;
    const above = [];
    const below = [];
    for (let index = first; index < end; index++) {
      if (bound.has(index)) continue;
      const cell = spare.pop() || create();
      cell.style.width = `${cellWidth}px`;
      cell.style.transform = `translate(${(index % columns) * stepX}px, ${Math.floor(index / columns) * stepY}px)`;
      bound.set(index, cell);
      bind(cell, index);
      (index < kept ? above : below).push(cell);
    }
    container.prepend(...above);
    container.append(...below);
  };

  const schedule = () => {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(update);
    }
  };
  const relayout = () => {
    layout = measure();
    for (const cell of bound.values()) cell.remove();
    spare.push(...bound.values());
    bound.clear();
    schedule();
  };

  relayout();
  window.addEventListener("scroll", schedule, { passive: true, signal });
  const resizes = new ResizeObserver(() => {
    if (container.clientWidth !== layout.width) relayout();
  });
  resizes.observe(container);
  signal.addEventListener("abort", () => resizes.disconnect());
}
