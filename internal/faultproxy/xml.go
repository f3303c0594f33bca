package faultproxy

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// idElem is an element of a create call's answer that holds the id of
// the resource it created, with the error EC2 gives a call naming that
// id while it does not know it yet.
type idElem struct {
	elem, code, format string // format has one %s, the id
}

var (
	instanceID = idElem{"instanceId", "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist"}
	imageID    = idElem{"imageId", "InvalidAMIID.NotFound", "The image id '[%s]' does not exist"}
	groupID    = idElem{"groupId", "InvalidGroup.NotFound", "The security group '%s' does not exist"}
	snapshotID = idElem{"snapshotId", "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist."}
	volumeID   = idElem{"volumeId", "InvalidVolume.NotFound", "The volume '%s' does not exist."}
	keyName    = idElem{"keyName", "InvalidKeyPair.NotFound", "The key pair '%s' does not exist"}
	keyPairID  = idElem{"keyPairId", "InvalidKeyPair.NotFound", "The key pair '%s' does not exist"}
	ltID       = idElem{"launchTemplateId", "InvalidLaunchTemplateId.NotFound", "The specified launch template, with template ID %s, does not exist."}
	ltName     = idElem{"launchTemplateName", "InvalidLaunchTemplateName.NotFoundException", "The specified launch template, with template name %s, does not exist."}
)

// created lists the EC2 create calls FreshNotFound watches, and where
// their answers name what they created.
var created = map[string][]idElem{
	"RunInstances":         {instanceID},
	"CreateImage":          {imageID},
	"CopyImage":            {imageID},
	"RegisterImage":        {imageID},
	"CreateSecurityGroup":  {groupID},
	"CreateSnapshot":       {snapshotID},
	"CopySnapshot":         {snapshotID},
	"CreateVolume":         {volumeID},
	"ImportKeyPair":        {keyName, keyPairID},
	"CreateKeyPair":        {keyName, keyPairID},
	"CreateLaunchTemplate": {ltID, ltName},
}

// listRule says where a Describe* answer lists resources: items of the
// element set, each with its id in the child element id. For
// DescribeInstances the instances are grouped in reservations (items of
// parent); a reservation whose every instance is cut goes too.
type listRule struct {
	set, id, parent string
}

// lists are the list answers FreshNotFound cuts fresh resources out of.
var lists = map[string]listRule{
	"DescribeImages":         {set: "imagesSet", id: "imageId"},
	"DescribeInstances":      {set: "instancesSet", id: "instanceId", parent: "reservationSet"},
	"DescribeSecurityGroups": {set: "securityGroupInfo", id: "groupId"},
	"DescribeKeyPairs":       {set: "keySet", id: "keyName"},
	"DescribeSnapshots":      {set: "snapshotSet", id: "snapshotId"},
	"DescribeVolumes":        {set: "volumeSet", id: "volumeId"},
}

// remember records the resources the answer of a create call names as
// created at now. p.mu is held.
func (p *Proxy) remember(action string, answer []byte, now time.Time) {
	for _, e := range created[action] {
		for _, id := range elementTexts(answer, e.elem) {
			p.fresh[id] = freshResource{id: id, code: e.code, message: fmt.Sprintf(e.format, id), created: now, byName: e.elem == "keyName"}
		}
	}
}

// isFresh reports whether id was created less than p.freshFor before
// now. p.mu is held.
func (p *Proxy) isFresh(id string, now time.Time) bool {
	f, ok := p.fresh[id]
	return ok && now.Sub(f.created) < p.freshFor
}

// hide returns the answer of list call action without the resources
// that are fresh at now, and how many it cut. p.mu is held.
func (p *Proxy) hide(action string, answer []byte, now time.Time) ([]byte, int) {
	rule, ok := lists[action]
	if !ok {
		return answer, 0
	}
	out, n, err := cutItems(answer, rule, func(id string) bool { return p.isFresh(id, now) })
	if err != nil {
		return answer, 0
	}
	return out, n
}

// elementTexts returns the text of every element named name in doc.
func elementTexts(doc []byte, name string) []string {
	d := xml.NewDecoder(bytes.NewReader(doc))
	var out []string
	depth := 0 // > 0 inside an element named name
	var text strings.Builder
	for {
		tok, err := d.RawToken()
		if err != nil {
			return out
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local == name {
				depth++
				if depth == 1 {
					text.Reset()
				}
			}
		case xml.CharData:
			if depth > 0 {
				text.Write(t)
			}
		case xml.EndElement:
			if t.Name.Local == name && depth > 0 {
				depth--
				if depth == 0 {
					if s := strings.TrimSpace(text.String()); s != "" && !slices.Contains(out, s) {
						out = append(out, s)
					}
				}
			}
		}
	}
}

// span is a byte range [start, end) of a document.
type span struct{ start, end int64 }

// cutItems removes from doc the items of rule.set whose id cut reports
// true (and, with rule.parent, the parent items left without any), and
// returns the rest of the document byte for byte, with the number of
// items removed.
func cutItems(doc []byte, rule listRule, cut func(id string) bool) ([]byte, int, error) {
	type frame struct {
		name         string
		start        int64
		text         strings.Builder
		id           string // of an item of rule.set
		items, spans int    // of an item of rule.parent: its set items, and those cut
	}
	d := xml.NewDecoder(bytes.NewReader(doc))
	var (
		stack []*frame
		spans []span
		n     int
	)
	parentOf := func(depthFromTop int) *frame { // stack[len-1-depthFromTop]
		if i := len(stack) - 1 - depthFromTop; i >= 0 {
			return stack[i]
		}
		return nil
	}
	for {
		start := d.InputOffset()
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			stack = append(stack, &frame{name: t.Name.Local, start: start})
		case xml.CharData:
			if top := parentOf(0); top != nil {
				top.text.Write(t)
			}
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, 0, errors.New("unbalanced document")
			}
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			end := d.InputOffset()
			item, set := parentOf(0), parentOf(1)
			switch {
			case f.name == rule.id && item != nil && item.name == "item" && set != nil && set.name == rule.set:
				item.id = strings.TrimSpace(f.text.String())
			case f.name == "item" && item != nil && item.name == rule.set:
				// item is the set here; the parent item is two up.
				owner, ownerSet := parentOf(1), parentOf(2)
				grouped := rule.parent != "" && owner != nil && owner.name == "item" && ownerSet != nil && ownerSet.name == rule.parent
				if grouped {
					owner.items++
				}
				if f.id != "" && cut(f.id) {
					spans = append(spans, span{f.start, end})
					n++
					if grouped {
						owner.spans++
					}
				}
			case rule.parent != "" && f.name == "item" && item != nil && item.name == rule.parent:
				if f.items > 0 && f.spans == f.items {
					spans = slices.DeleteFunc(spans, func(s span) bool { return s.start >= f.start && s.end <= end })
					spans = append(spans, span{f.start, end})
				}
			}
		}
	}
	if len(spans) == 0 {
		return doc, 0, nil
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.start - b.start) })
	var out bytes.Buffer
	at := int64(0)
	for _, s := range spans {
		out.Write(doc[at:s.start])
		at = s.end
	}
	out.Write(doc[at:])
	return out.Bytes(), n, nil
}

// xmlEscape escapes s for XML text.
func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
