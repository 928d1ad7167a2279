// Work that costs the server seconds a piece (a unit's first feature visualisation) asked for a few at a time,
// in the order it was queued: the first answers come in seconds, instead of every one at once after minutes.

/** A queue that runs at most `limit` tasks at once. `queue(task, wanted)` resolves with `task()`'s result when
 *  its turn has come and gone, or with null, untouched, when `wanted()` is false by then (a grid cell that
 *  scrolled away or shows another unit now). `counts()` says how many were queued and finished. */
export function taskQueue(limit) {
  const waiting = [];
  let running = 0;
  let queued = 0;
  let finished = 0;
  const next = () => {
    while (running < limit && waiting.length) {
      const { task, wanted, resolve, reject } = waiting.shift();
      if (!wanted()) {
        queued -= 1;
        resolve(null);
        continue;
      }
      running += 1;
      const settle = (answer) => (outcome) => {  // counted before its caller hears of it, so counts() includes it
        running -= 1;
        finished += 1;
        answer(outcome);
        next();
      };
      Promise.resolve().then(task).then(settle(resolve), settle(reject));
    }
  };
  const queue = (task, wanted = () => true) => new Promise((resolve, reject) => {
    queued += 1;
    waiting.push({ task, wanted, resolve, reject });
    next();
  });
  queue.counts = () => ({ queued, finished, running });
  return queue;
}
