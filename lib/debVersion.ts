// Debian version comparison (dpkg --compare-versions): [epoch:]upstream[-revision], where letters sort before
// non-letters and "~" sorts before everything, even the end of the string.
function order(c: string): number {
    if (c === "~") return -1;
    if (/\d/.test(c)) return 0;
    if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
    return c.charCodeAt(0) + 256;
}

function comparePart(a: string, b: string): number {
    let i = 0;
    let j = 0;
    while (i < a.length || j < b.length) {
        let diff = 0;
        while ((i < a.length && !/\d/.test(a[i])) || (j < b.length && !/\d/.test(b[j]))) {
            const ac = i < a.length && !/\d/.test(a[i]) ? order(a[i]) : 0;
            const bc = j < b.length && !/\d/.test(b[j]) ? order(b[j]) : 0;
            if (ac !== bc) return ac - bc;
            i++;
            j++;
        }
        while (a[i] === "0") i++;
        while (b[j] === "0") j++;
        while (i < a.length && /\d/.test(a[i]) && j < b.length && /\d/.test(b[j])) {
            if (!diff) diff = a.charCodeAt(i) - b.charCodeAt(j);
            i++;
            j++;
        }
        if (i < a.length && /\d/.test(a[i])) return 1;
        if (j < b.length && /\d/.test(b[j])) return -1;
        if (diff) return diff;
    }
    return 0;
}

function split(v: string): [number, string, string] {
    let rest = v;
    let epoch = 0;
    const colon = rest.indexOf(":");
    if (colon > 0 && /^\d+$/.test(rest.slice(0, colon))) {
        epoch = Number(rest.slice(0, colon));
        rest = rest.slice(colon + 1);
    }
    const dash = rest.lastIndexOf("-");
    return dash >= 0 ? [epoch, rest.slice(0, dash), rest.slice(dash + 1)] : [epoch, rest, ""];
}

/** <0, 0, >0 like dpkg --compare-versions a lt/eq/gt b. */
export function compareDebVersions(a: string, b: string): number {
    const [ea, ua, ra] = split(a);
    const [eb, ub, rb] = split(b);
    if (ea !== eb) return ea - eb;
    return comparePart(ua, ub) || comparePart(ra, rb);
}
