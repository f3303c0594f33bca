// Package iamproof holds the proof that the IAM policies bakery iam-policy
// prints are sufficient and minimal: its test runs the lifecycle of an AMI
// recipe against a moto_server that enforces IAM, each verb as an IAM user
// holding only that verb's generated policy, then removes each action the
// verb used in turn and checks that the verb then fails with bakery's
// message naming the action. It has no code of its own.
package iamproof
