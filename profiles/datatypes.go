package profiles

// openTypes are the R4 data types a choice element ([x]) may take (the "open
// type" list of ElementDefinition.fixed[x]). The generator forbids the JSON
// names of the types a profile leaves out.
var openTypes = [...]string{
	"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
	"instant", "integer", "markdown", "oid", "positiveInt", "string", "time",
	"unsignedInt", "uri", "url", "uuid",
	"Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding",
	"ContactPoint", "Count", "Distance", "Duration", "HumanName", "Identifier", "Money",
	"Period", "Quantity", "Range", "Ratio", "Reference", "SampledData", "Signature",
	"Timing", "ContactDetail", "Contributor", "DataRequirement", "Expression",
	"ParameterDefinition", "RelatedArtifact", "TriggerDefinition", "UsageContext",
	"Dosage", "Meta",
}

// isPrimitiveType reports whether code names an R4 primitive type (its JSON
// may come with a "_name" sibling carrying id and extensions).
func isPrimitiveType(code string) bool {
	return code != "" && code[0] >= 'a' && code[0] <= 'z'
}

// isDataType reports whether code names an R4 data type (not a resource).
func isDataType(code string) bool {
	if isPrimitiveType(code) {
		return true
	}
	for _, t := range openTypes {
		if t == code {
			return true
		}
	}
	switch code {
	case "BackboneElement", "Element", "Extension", "Narrative", "ElementDefinition",
		"MarketingStatus", "Population", "ProductShelfLife", "ProdCharacteristic",
		"SubstanceAmount", "MoneyQuantity", "SimpleQuantity", "xhtml":
		return true
	}
	return false
}

// isResourceType reports whether code names a concrete resource type, as
// used in the type of Bundle.entry.resource or DomainResource.contained.
func isResourceType(code string) bool {
	return code != "" && code[0] >= 'A' && code[0] <= 'Z' && !isDataType(code) &&
		code != "Resource" && code != "DomainResource"
}
