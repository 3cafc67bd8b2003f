// Watches the watcher: fires when no cluster check completed within `windowSize`. Each queue worker
// logs "checked cluster" when a check finishes (shared/functions/workers.py) and a whole in-process cycle
// logs "cycle finished" (shared/monitor/cycle.py), so silence means the timers stopped, every worker is
// failing, the identity lost access to the fleet, or the fleet is empty.
param name string
param location string
param tags object
param appInsightsId string
param windowSize string
param alertEmail string
param existingActionGroupId string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${name}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'tunnelmon'
    enabled: true
    emailReceivers: [
      {
        name: 'monitor-owners'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var newActionGroup = empty(alertEmail) ? [] : [actionGroup.id]
var otherActionGroup = empty(existingActionGroupId) ? [] : [existingActionGroupId]
var actionGroups = concat(newActionGroup, otherActionGroup)

resource stalled 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: name
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AKS tunnel monitor stopped completing cycles'
    description: 'No "checked cluster" or "cycle finished" trace in the window: the monitor is not checking the fleet. See docs/deploy.md, "What the alert means".'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: windowSize
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: 'traces | where message in ("checked cluster", "cycle finished") | summarize completed = count()'
          timeAggregation: 'Total'
          metricMeasureColumn: 'completed'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: actionGroups
    }
  }
}

output alertId string = stalled.id
