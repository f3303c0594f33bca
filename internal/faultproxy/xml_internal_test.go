package faultproxy

import (
	"strings"
	"testing"
)

func TestCutItemsRemovesFreshItemsAndEmptiedReservations(t *testing.T) {
	doc := `<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
<reservationSet>
 <item><reservationId>r-1</reservationId><instancesSet>
  <item><instanceId>i-old</instanceId><imageId>ami-1</imageId><tagSet><item><key>k</key></item></tagSet></item>
  <item><instanceId>i-new1</instanceId></item>
 </instancesSet></item>
 <item><reservationId>r-2</reservationId><instancesSet>
  <item><instanceId>i-new2</instanceId><groupSet><item><groupId>sg-1</groupId></item></groupSet></item>
 </instancesSet></item>
</reservationSet></DescribeInstancesResponse>`
	fresh := map[string]bool{"i-new1": true, "i-new2": true, "sg-1": true}
	out, n, err := cutItems([]byte(doc), lists["DescribeInstances"], func(id string) bool { return fresh[id] })
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	if n != 2 || strings.Contains(got, "i-new") || strings.Contains(got, "r-2") {
		t.Errorf("cut %d:\n%s\nwant both new instances and reservation r-2 gone", n, got)
	}
	for _, keep := range []string{"r-1", "i-old", "<key>k</key>", `xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"`} {
		if !strings.Contains(got, keep) {
			t.Errorf("%q was cut too:\n%s", keep, got)
		}
	}

	// Ids nested deeper than the item's own id do not count.
	sgs := `<R><securityGroupInfo><item><groupId>sg-2</groupId><ipPermissions><item><groups><item><groupId>sg-1</groupId></item></groups></item></ipPermissions></item></securityGroupInfo></R>`
	out, n, err = cutItems([]byte(sgs), lists["DescribeSecurityGroups"], func(id string) bool { return fresh[id] })
	if err != nil || n != 0 || string(out) != sgs {
		t.Errorf("cut %d (%v) from a list without fresh groups:\n%s", n, err, out)
	}
}

func TestElementTexts(t *testing.T) {
	doc := `<RunInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><imageId>ami-src</imageId></item><item><instanceId> i-2 </instanceId></item></instancesSet></RunInstancesResponse>`
	if got := elementTexts([]byte(doc), "instanceId"); strings.Join(got, " ") != "i-1 i-2" {
		t.Errorf("instance ids = %v", got)
	}
}
