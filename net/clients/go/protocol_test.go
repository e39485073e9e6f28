package rush

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The specification: every table of this package is held to it.
const protocolMD = "../../../docs/PROTOCOL.md"

// docRow is one row of a PROTOCOL.md layout table (| offset | size | type | field | meaning |).
type docRow struct {
	off, size int
	typ       string
	name      string // without backticks; "reserved" for reserved rows
}

// docLayouts returns PROTOCOL.md's layout tables keyed by "section/index" ("4.2/0").
func docLayouts(t *testing.T) map[string][]docRow {
	t.Helper()
	file, err := os.Open(protocolMD)
	if err != nil {
		t.Fatalf("the specification must be readable: %v", err)
	}
	defer file.Close()
	heading := regexp.MustCompile(`^#{2,3} (\d+(?:\.\d+)?)[ .]`)
	tables := map[string]*[]docRow{}
	section, index := "", 0
	var current *[]docRow
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		line := scanner.Text()
		if m := heading.FindStringSubmatch(line); m != nil {
			section, index, current = m[1], 0, nil
			continue
		}
		if !strings.HasPrefix(line, "|") {
			current = nil
			continue
		}
		cells := strings.Split(line, "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) > 4 && cells[1] == "offset" && cells[2] == "size" && cells[3] == "type" {
			current = &[]docRow{}
			tables[section+"/"+strconv.Itoa(index)] = current
			index++
			continue
		}
		if current == nil || strings.HasPrefix(cells[1], "---") {
			continue
		}
		off, err1 := strconv.Atoi(cells[1])
		size, err2 := strconv.Atoi(cells[2])
		if err1 != nil || err2 != nil {
			t.Fatalf("PROTOCOL.md section %s: bad layout row %q", section, line)
		}
		name := strings.Trim(cells[4], "`")
		if cells[3] == "—" || name == "reserved" {
			name = "reserved"
		}
		*current = append(*current, docRow{off: off, size: size, typ: cells[3], name: name})
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	out := map[string][]docRow{}
	for key, rows := range tables {
		out[key] = *rows
	}
	return out
}

func allLayouts() []*layout {
	seen := map[*layout]bool{}
	var out []*layout
	for _, spec := range opTable {
		if spec == nil {
			continue
		}
		for _, l := range []*layout{spec.request, spec.response} {
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	return out
}

var typeWidth = map[string]int{"u8": 1, "u16": 2, "u32": 4, "u64": 8, "i64": 8}

// Every layout table of the package is the one of PROTOCOL.md: same fields, names, offsets
// and widths, in the same order, and reserved bytes exactly where the document has them.
func TestLayoutsMatchProtocolMD(t *testing.T) {
	docs := docLayouts(t)
	for _, l := range allLayouts() {
		key := l.doc + "/" + strconv.Itoa(l.table)
		rows, ok := docs[key]
		if !ok {
			t.Errorf("layout %s: PROTOCOL.md has no layout table %s", key, key)
			continue
		}
		fields := 0
		reserved := []span{}
		end := HeaderSize
		for _, row := range rows {
			if row.off != end {
				t.Errorf("layout %s: PROTOCOL.md row %q starts at %d, the previous one ended at %d", key, row.name, row.off, end)
			}
			end = row.off + row.size
			if row.name == "reserved" {
				reserved = append(reserved, span{row.off, row.off + row.size})
				continue
			}
			if fields >= len(l.fields) {
				t.Errorf("layout %s: PROTOCOL.md field %q is missing from the Go table", key, row.name)
				continue
			}
			f := l.fields[fields]
			fields++
			if f.name != row.name || f.off != row.off || f.width != row.size || typeWidth[row.typ] != row.size {
				t.Errorf("layout %s: Go field %s@%d/%d, PROTOCOL.md %s@%d/%d (%s)",
					key, f.name, f.off, f.width, row.name, row.off, row.size, row.typ)
			}
		}
		if fields != len(l.fields) {
			t.Errorf("layout %s: the Go table has %d fields, PROTOCOL.md %d", key, len(l.fields), fields)
		}
		if end != l.size {
			t.Errorf("layout %s: PROTOCOL.md's table ends at %d, the frame is %d bytes", key, end, l.size)
		}
		// Adjacent reserved rows in the document are one span in the computed list.
		var merged []span
		for _, s := range reserved {
			if n := len(merged); n > 0 && merged[n-1].to == s.from {
				merged[n-1].to = s.to
			} else {
				merged = append(merged, s)
			}
		}
		if got := l.reserved; !equalSpans(got, merged) {
			t.Errorf("layout %s: reserved bytes %v, PROTOCOL.md %v", key, got, merged)
		}
	}
}

func equalSpans(a, b []span) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The header of section 2 is what putHeader writes.
func TestHeaderMatchesProtocolMD(t *testing.T) {
	rows := docLayouts(t)["2/0"]
	want := []docRow{
		{0, 2, "u16", "magic"}, {2, 1, "u8", "version"}, {3, 1, "u8", "opcode"},
		{4, 2, "u16", "length"}, {6, 2, "u16", "flags"}, {8, 8, "u64", "request_id"},
	}
	if len(rows) != len(want) {
		t.Fatalf("PROTOCOL.md header table: %v", rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("header row %d: PROTOCOL.md %v, putHeader writes %v", i, rows[i], want[i])
		}
	}
	frame := make([]byte, HeaderSize)
	putHeader(frame, OpQuerySKU, 64, 0x0807060504030201)
	if got := hex.EncodeToString(frame); got != "5253010540000000"+"0102030405060708" {
		t.Errorf("header bytes %s", got)
	}
}

// The opcode, result code and state tables of the package are PROTOCOL.md's, row for row.
func TestNumberTablesMatchProtocolMD(t *testing.T) {
	text, err := os.ReadFile(protocolMD)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{} // first cell -> cells
	for _, line := range strings.Split(string(text), "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(line, "|")
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "`")
		}
		if len(cells) > 3 {
			// Opcodes and result codes share no first cell (0x.. against decimal); states and
			// result codes do (0..6), so keep every row under its first two cells.
			rows[cells[1]+"|"+cells[2]] = cells
		}
	}
	opcodes := 0
	for i, spec := range opTable {
		if spec == nil {
			continue
		}
		opcodes++
		op := Opcode(i)
		number := "0x" + strconv.FormatUint(uint64(op), 16)
		if len(number) == 3 {
			number = "0x0" + number[2:]
		}
		cells, ok := rows[number+"|"+spec.name]
		if !ok {
			t.Errorf("opcode %s %s: no row in PROTOCOL.md section 3", number, spec.name)
			continue
		}
		// | opcode | name | request body | response body | response size | admin |
		if cells[3] != spec.request.doc {
			t.Errorf("%s: request body section %s in PROTOCOL.md, %s here", spec.name, cells[3], spec.request.doc)
		}
		if !strings.Contains(cells[4], "("+spec.response.doc+")") {
			t.Errorf("%s: response body %q in PROTOCOL.md, section %s here", spec.name, cells[4], spec.response.doc)
		}
		if size := strings.Trim(cells[5], "*"); size != strconv.Itoa(spec.response.size) {
			t.Errorf("%s: response size %s in PROTOCOL.md, %d here", spec.name, size, spec.response.size)
		}
		if (cells[6] == "yes") != spec.admin || op.IsAdmin() != spec.admin {
			t.Errorf("%s: admin %q in PROTOCOL.md, %v here", spec.name, cells[6], spec.admin)
		}
	}
	if opcodes != 13 {
		t.Errorf("%d opcodes in the table, version 1 has 13", opcodes)
	}
	for code := ResultCode(0); code.Valid(); code++ {
		if _, ok := rows[strconv.Itoa(int(code))+"|"+code.String()]; !ok {
			t.Errorf("result code %d %s: no row in PROTOCOL.md section 7", code, code)
		}
	}
	if ResultCode(22).Valid() || len(resultInfo) != 22 {
		t.Errorf("version 1 has result codes 0..=21 exactly")
	}
	for state := ReservationState(0); state.Valid(); state++ {
		if _, ok := rows[strconv.Itoa(int(state))+"|"+state.String()]; !ok {
			t.Errorf("state %d %s: no row in PROTOCOL.md section 5.5", state, state)
		}
	}
	if ReservationState(7).Valid() {
		t.Errorf("version 1 has states 0..=6 exactly")
	}
}

// Every layout table is well-formed: fields inside the frame, after the header, in order,
// without overlap, of a width the codec handles; every response field has both accessors.
func TestLayoutTablesAreConsistent(t *testing.T) {
	for _, l := range allLayouts() {
		end := HeaderSize
		for _, f := range l.fields {
			if f.off < end || f.off+f.width > l.size {
				t.Errorf("layout %s: field %s@%d overlaps or leaves the frame", l.doc, f.name, f.off)
			}
			if f.width != 1 && f.width != 2 && f.width != 4 && f.width != 8 {
				t.Errorf("layout %s: field %s has width %d", l.doc, f.name, f.width)
			}
			end = f.off + f.width
		}
	}
	for _, spec := range opTable {
		if spec == nil {
			continue
		}
		if n := len(spec.request.fields); n > maxFields {
			t.Errorf("%s: %d request fields, Request.wire holds %d", spec.name, n, maxFields)
		}
		for _, f := range spec.response.fields {
			if f.set == nil || f.get == nil {
				t.Errorf("%s response field %s lacks an accessor", spec.name, f.name)
			}
		}
		if spec.route != routeAnywhere && spec.routeField < 0 {
			t.Errorf("%s: routed but no routing field", spec.name)
		}
	}
}

// exampleBlock returns the bytes of a `<!-- example:NAME -->` block of PROTOCOL.md.
func exampleBlock(t *testing.T, name string) []byte {
	t.Helper()
	text, err := os.ReadFile(protocolMD)
	if err != nil {
		t.Fatal(err)
	}
	marker := "<!-- example:" + name + " -->"
	at := bytes.Index(text, []byte(marker))
	if at < 0 {
		t.Fatalf("PROTOCOL.md has no example %s", name)
	}
	lines := strings.Split(string(text[at+len(marker):]), "\n")
	var out []byte
	for _, line := range lines[2:] { // the rest of the marker line, then the ```text fence
		line = strings.TrimSpace(line)
		if line == "```" {
			return out
		}
		for _, token := range strings.Fields(line) {
			if strings.HasSuffix(token, ":") {
				continue
			}
			b, err := strconv.ParseUint(token, 16, 8)
			if err != nil {
				t.Fatalf("example %s: %q is not a hex byte", name, token)
			}
			out = append(out, byte(b))
		}
	}
	t.Fatalf("example %s: unterminated block", name)
	return nil
}

// PROTOCOL.md section 9, both directions.
func TestWorkedExample(t *testing.T) {
	request := AppendRequest(nil, 7, Reserve{Account: 42, SKU: 1001, Key: 9001, Quantity: 1, Flags: FlagPay})
	if want := exampleBlock(t, "reserve-request"); !bytes.Equal(request, want) {
		t.Errorf("RESERVE request\n got %x\nwant %x", request, want)
	}
	response := exampleBlock(t, "reserve-response")
	reply, n, err := DecodeResponse(response)
	if err != nil || n != ResponseSize {
		t.Fatalf("decode: n %d err %v", n, err)
	}
	want := Reply{Opcode: OpReserve, RequestID: 7, Result: ResultOK, Original: ResultOK,
		Reservation: Reservation{ID: 0x0000000100000000, SKU: 1001, Amount: 4999,
			DeadlineMs: 1767225630000, Quantity: 1, Flags: FlagPay, State: StateHeld}}
	if reply != want {
		t.Errorf("decoded\n got %+v\nwant %+v", reply, want)
	}
	if again := AppendResponse(nil, reply); !bytes.Equal(again, response) {
		t.Errorf("re-encoded\n got %x\nwant %x", again, response)
	}
}
